"""Every figure the README states comes from the results file its paragraph links (``benchmarks/results/*.md``).

A paragraph of README.md that quotes measured figures links the results file a benchmark wrote; each number in
the paragraph must be found in that file, rounded as the README shows it (2.694 in the file reads 2.7). A number
in a paragraph that links no results file is a figure with no source and fails the test, unless it is one of the
few that are not measurements (set-up and command-line values, listed with their reasons in ``NOT_FIGURES``).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS_LINK = re.compile(r"\]\((benchmarks/results/[\w-]+\.md)\)")
NUMBER = re.compile(r"(?<![\w.\-/])(\d+(?:,\d{3})*(?:\.\d+)?)(?![\w/])")
NOT_FIGURES = {
    "200": "the size of the sentiment sample shipped in the package",
    "3.10": "the oldest Python supported",
    "2": "the quickstart's 2-5 minutes on a laptop, a set-up hint rather than a benchmark figure",
}


def _paragraphs(text: str) -> list[str]:
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no figures
    return [p for p in re.split(r"\n\s*\n", prose) if p.strip() and not p.lstrip().startswith(("|", "!", "#"))]


def _numbers(text: str) -> list[str]:
    text = re.sub(r"\]\([^)]*\)|`[^`]*`", "", text)  # link targets and code spans
    return [n.replace(",", "") for n in NUMBER.findall(text)]


def _found(number: str, source: str) -> bool:
    places = len(number.split(".")[1]) if "." in number else 0
    quantum = Decimal(1).scaleb(-places)
    wanted = Decimal(number)
    return any(Decimal(m.replace(",", "")).quantize(quantum, rounding=ROUND_HALF_UP) == wanted
               for m in re.findall(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?", source)
               if "e" not in m)


README_PARAGRAPHS = _paragraphs((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.mark.parametrize("paragraph", README_PARAGRAPHS, ids=lambda p: p.strip()[:40])
def test_each_readme_figure_is_in_the_results_file_its_paragraph_links(paragraph):
    links = RESULTS_LINK.findall(paragraph)
    numbers = [n for n in _numbers(paragraph) if n not in NOT_FIGURES]
    if not links:
        assert not numbers, f"figures {numbers} with no results file linked in: {paragraph.strip()[:200]}"
        return
    source = "\n".join((ROOT / link).read_text(encoding="utf-8") for link in links)
    missing = [n for n in numbers if not _found(n, source)]
    assert not missing, f"{missing} are not in {links}: {paragraph.strip()[:200]}"


def test_the_check_fails_on_a_figure_the_results_file_lacks():
    source = "| gradcam | 2.694 | 0.3518 |"
    assert _found("2.7", source) and _found("0.35", source)
    assert not _found("2.8", source) and not _found("0.36", source)

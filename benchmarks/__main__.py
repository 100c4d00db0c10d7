"""Run the benchmarks: ``python -m benchmarks --quick`` (minutes on a laptop CPU) or ``--full``.

Full runs write to ``benchmarks/results/`` (committed, linked from the README); quick runs to the
ignored ``benchmarks/results-quick/`` unless ``--out`` says otherwise.

Each benchmark is a module ``benchmarks/<name>.py`` with ``run(quick, out_dir) -> Path``. A module that
does not exist yet, or whose data is absent (it raises ``FileNotFoundError``), is skipped with the reason.
``summary.md`` links every result file with its headline (the line starting with ``Headline:``).
Hidden ``--tiny``: tiny random backbones and synthetic data, only for modules that set ``TINY = True``
(the test suite uses it to check the machinery in seconds).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
import traceback
from pathlib import Path

from ._harness import QUICK_RESULTS, RESULTS, TINY_ENV, markdown_table, read_headline, tiny, write_result

BENCHMARKS = (
    "accuracy", "learning_curve", "gridsearch_cache", "prefix_cache", "throughput", "lora_vs_full", "inference",
    "domain_adaptation", "learning_rates", "sequential_transfer", "distillation", "multitask", "few_shot",
    "standardisation", "semi_supervised", "time_limit", "backends", "tta", "explanations", "lr_finder",
    "weight_averaging",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True, help="small subsamples (default)")
    mode.add_argument("--full", dest="quick", action="store_false", help="every recipe on all the data")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where result files go (default: {RESULTS} for --full, {QUICK_RESULTS} for --quick, "
                             "so that a smoke test never replaces the committed full results)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = QUICK_RESULTS if args.quick else RESULTS
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


def run_one(name: str, quick: bool, out_dir: Path) -> tuple[str, Path | None, float]:
    """Run one benchmark; its status ("ok", "skipped: ...", "failed: ..."), result file and seconds."""
    if importlib.util.find_spec(f"benchmarks.{name}") is None:
        return "skipped: module not written yet", None, 0.0
    module = importlib.import_module(f"benchmarks.{name}")
    if tiny() and not getattr(module, "TINY", False):
        return "skipped: no tiny configuration", None, 0.0
    start = time.perf_counter()
    try:
        path = module.run(quick, out_dir)
    except FileNotFoundError as err:
        return f"skipped: data absent ({err})", None, time.perf_counter() - start
    except Exception as err:  # one broken benchmark must not hide the others' results
        traceback.print_exc()
        return f"failed: {type(err).__name__}: {err}".splitlines()[0], None, time.perf_counter() - start
    return "ok", Path(path), time.perf_counter() - start


def write_summary(statuses: dict[str, tuple[str, Path | None, float]], out_dir: Path) -> Path:
    """``summary.md``: one row per benchmark, linking its result file (this run's or an earlier one)."""
    rows = []
    for name in BENCHMARKS:
        status, path, seconds = statuses.get(name, ("not run", None, 0.0))
        earlier = out_dir / f"{name}.md"
        if path is None and earlier.exists():
            path, status = earlier, f"{status}; earlier result shown"
        link = f"[{path.name}]({os.path.relpath(path, out_dir)})" if path else "-"
        rows.append({"benchmark": name, "result": link, "headline": read_headline(path) if path else "-",
                     "this run": status, "seconds": round(seconds, 1)})
    return write_result("summary", "sktransfer benchmarks: summary", markdown_table(rows), out_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiny:
        os.environ[TINY_ENV] = "1"
    statuses = {}
    for name in args.only or BENCHMARKS:
        print(f"[benchmarks] {name} ({'quick' if args.quick else 'full'}{', tiny' if tiny() else ''}) ...", flush=True)
        statuses[name] = run_one(name, args.quick, args.out)
        status, path, seconds = statuses[name]
        print(f"[benchmarks] {name}: {status}{f' -> {path}' if path else ''} ({seconds:.0f} s)", flush=True)
    print(f"[benchmarks] summary -> {write_summary(statuses, args.out)}")
    return int(any(status.startswith("failed") for status, _, _ in statuses.values()))


if __name__ == "__main__":
    sys.exit(main())

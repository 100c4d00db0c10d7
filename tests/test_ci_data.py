"""CI never passes by skipping the real-data tests: .ci/run stops when ../shared/data is absent, and under CI=true
a real-data test whose data is absent fails instead of skipping (tests/conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import conftest

ROOT = Path(__file__).resolve().parents[1]


class _Item:
    def __init__(self, mark):
        self.mark = mark

    def get_closest_marker(self, name):
        return self.mark if self.mark.name == name else None


@pytest.mark.parametrize("ci", ["true", ""])
def test_absent_shared_data_fails_under_ci_and_skips_elsewhere(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    mark = conftest.requires_shared_data("no-such-data-set").mark
    if ci:
        assert mark.name == "shared_data_absent"
        with pytest.raises(pytest.fail.Exception, match="CI=true, and .*no-such-data-set is absent"):
            conftest.pytest_runtest_setup(_Item(mark))
    else:
        assert mark.name == "skipif" and mark.args == (True,) and mark.kwargs["reason"].endswith("is absent")
        conftest.pytest_runtest_setup(_Item(mark))  # no failure: the skip applies


def test_present_shared_data_runs_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    mark = conftest.requires_shared_data().mark  # ../shared/data itself: present, or nothing is tested here
    if not conftest.SHARED_DATA.exists():
        assert mark.name == "shared_data_absent"
    else:
        assert mark.name == "skipif" and mark.args == (False,)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_ci_run_stops_when_the_shared_data_is_absent(tmp_path):
    # A clone with no shared/ beside it: .ci/run names what is missing before it builds anything.
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", clone / ".ci" / "run")
    shutil.copy(ROOT / "README.md", clone / "README.md")
    done = subprocess.run(["bash", str(clone / ".ci" / "run")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "CI needs the shared data beside the repository" in done.stderr
    assert "../shared/data/hymenoptera/train" in done.stderr and "../shared/data/sst2/test.tsv" in done.stderr
    assert not (clone / ".venv").exists()

"""The tiny modes of the settings benchmarks (test-time augmentation, weight averaging) through the runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tta_and_weight_averaging_tiny_runs_write_their_tables(tmp_path):
    env = {**os.environ, "SKTRANSFER_BENCH_TINY": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--tiny", "--only", "tta,weight_averaging", "--out",
         str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tta = (tmp_path / "tta.md").read_text()
    assert "Mode: tiny." in tta and "## hymenoptera" in tta
    assert "| frozen default | - | 12 |" in tta and "| top 3 blocks fine-tuned | 0 | 12 |" in tta
    assert "| 4 views, beta 0.25 (TTA()) |" in tta  # the cached views' variants
    averaging = (tmp_path / "weight_averaging.md").read_text()
    assert "Mode: tiny." in averaging and "## The rule (issue 31)" in averaging
    rows = [json.loads(line) for line in (tmp_path / "weight_averaging.jsonl").read_text().splitlines()]
    assert sorted((r["set"], r["arm"]) for r in rows) == sorted(
        (name, arm) for name in ("texts", "images") for arm in ("none", "ema", "swa", "soup"))
    for arm in ("ema", "swa", "soup"):
        assert f"| {arm} | " in averaging.split("## The rule (issue 31)")[1]

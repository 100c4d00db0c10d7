"""The benchmark machinery: the runner, its summary, and the harness helpers (tiny mode, no real data)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.__main__ import parse_args, run_one, write_summary
from benchmarks._harness import headline, paired_comparison, read_headline, run_isolated, write_result

ROOT = Path(__file__).resolve().parents[1]


def test_quick_tiny_run_writes_result_files_and_summary(tmp_path):
    env = {**os.environ, "SKTRANSFER_BENCH_TINY": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--tiny", "--only", "accuracy,learning_curve",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = (tmp_path / "accuracy.md").read_text()
    assert "| recipe | train n | accuracy % |" in accuracy
    assert "frozen embeddings + LogisticRegression" in accuracy and "TF-IDF(1-2 gram)" in accuracy
    assert "precision" in accuracy and "recall" in accuracy  # classification reports
    paired = accuracy.split("## Paired")[1]
    assert "| hymenoptera | 24 |" in paired and "| SST-2, 5,000 phrases | 24 |" in paired
    assert "| books (5-fold CV) | 30 |" in paired and "| office31-amazon (5-fold CV) | 30 |" in paired
    curve = (tmp_path / "learning_curve.md").read_text()
    assert "| train n |" in curve and "PretrainedTextClassifier()" in curve
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text()
    assert "[accuracy.md](accuracy.md)" in summary and "[learning_curve.md](learning_curve.md)" in summary
    assert read_headline(tmp_path / "accuracy.md") in summary
    assert "| throughput | - | - | not run |" in summary


def test_paired_comparison_counts_the_items_only_one_classifier_gets_right():
    y = ["a"] * 10
    pair = paired_comparison("d", y, ["a"] * 9 + ["b"], ["b"] * 8 + ["a", "b"])
    assert (pair["n"], pair["default right, LR wrong"], pair["LR right, default wrong"]) == (10, 8, 0)
    assert (pair["default %"], pair["LR %"]) == (90.0, 10.0)
    assert pair["exact McNemar p"] == pytest.approx(2 * 0.5**8)
    assert paired_comparison("d", y, y, y)["exact McNemar p"] == 1.0


def test_headline_round_trip(tmp_path):
    path = write_result("demo", "Demo", headline("92.1 % in 3 s") + "\n| a |\n|---|\n| 1 |", tmp_path)
    assert read_headline(path) == "92.1 % in 3 s"
    assert read_headline(write_result("bare", "Bare", "no headline here", tmp_path)) == ""


def test_summary_falls_back_to_an_earlier_result(tmp_path):
    write_result("throughput", "Throughput", headline("1000 images/s"), tmp_path)
    text = write_summary({"accuracy": ("skipped: data absent", None, 0.0)}, tmp_path).read_text()
    assert "| throughput | [throughput.md](throughput.md) | 1000 images/s | not run; earlier result shown |" in text
    assert "| accuracy | - | - | skipped: data absent |" in text


def test_missing_module_is_skipped(tmp_path):
    status, path, _ = run_one("no_such_benchmark", quick=True, out_dir=tmp_path)
    assert status == "skipped: module not written yet" and path is None


def test_unknown_benchmark_name_is_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--only", "accuracy,nope"])
    assert "unknown benchmark(s) nope" in capsys.readouterr().err
    args = parse_args(["--full", "--only", "throughput"])
    assert args.quick is False and args.only == ["throughput"]


def test_run_isolated_runs_in_a_fresh_process(monkeypatch):
    monkeypatch.delenv("SKTRANSFER_BENCH_TINY", raising=False)
    result = run_isolated("json:loads", s='{"answer": 42}')
    assert result["answer"] == 42 and result["peak_rss_mb"] > 0 and result["process_seconds"] > 0
    with pytest.raises(RuntimeError, match="json:loads failed"):
        run_isolated("json:loads", s="not json")


def test_quick_runs_never_write_the_committed_results():
    from benchmarks._harness import QUICK_RESULTS, RESULTS

    assert parse_args(["--quick"]).out == QUICK_RESULTS != RESULTS
    assert parse_args([]).out == QUICK_RESULTS
    assert parse_args(["--full"]).out == RESULTS
    ignored = subprocess.run(["git", "check-ignore", "-q", str(QUICK_RESULTS / "summary.md")], cwd=ROOT)
    assert ignored.returncode == 0, "the quick-results folder must be ignored by git"


def test_a_frozen_rerun_carries_the_fine_tuning_rows_over_with_their_date(tmp_path, monkeypatch):
    from benchmarks import _harness, accuracy

    name = "sktransfer full fine-tuning (loop's settings)"
    (tmp_path / "accuracy.md").write_text(
        f"# t\n\n- date: 2026-01-02T03:04\n\n| recipe | train n | accuracy % |\n|---|---|---|\n"
        f"| {name} | 245 | 92.16 |\n\n**{name}**\n\n```\nreport\n```\n")
    monkeypatch.setattr(_harness, "RESULTS", tmp_path)
    carried = accuracy._carried([name, accuracy.DEFAULT])
    assert list(carried) == [name]  # the default's frozen head is rerun, never carried
    line, score, report = carried[name]
    assert line == f"| {name} (from the run of 2026-01-02T03:04) | 245 | 92.16 |" and score == 92.16
    assert report.startswith(f"**{name} (from the run of 2026-01-02T03:04)**\n\n```\nreport\n```")
    (tmp_path / "accuracy.md").write_text(f"- date: 2027-01-01T00:00\n\n{line}\n\n{report}")
    assert accuracy._carried([name])[name] == carried[name]  # carried twice: still the run that measured it
    with pytest.raises(ValueError, match="run in full"):
        accuracy._carried(["hand-written PyTorch loop (full fine-tuning)"])


def test_a_rerun_of_the_learning_rates_auto_rows_carries_every_other_row_per_section(tmp_path, monkeypatch):
    from benchmarks import _harness, learning_rates

    table = "| lr | head rate | accuracy % |\n|---|---|---|\n| auto | 0.001 | {} |\n| 0.0001 | 0.0001 | {} |\n"
    (tmp_path / "learning_rates.md").write_text(
        f"# t\n\n- date: 2026-01-02T03:04\n\n## Images\n\n{table.format(90.0, 91.5)}\n"
        f"## Texts\n\n{table.format(80.0, 84.86)}\n")
    monkeypatch.setattr(_harness, "RESULTS", tmp_path)
    texts = learning_rates._Committed("Texts")
    line, accuracy = texts.row(1e-4)
    assert line == "| 0.0001 (from the run of 2026-01-02T03:04) | 0.0001 | 84.86 |" and accuracy == 84.86
    assert texts.header == ["| lr | head rate | accuracy % |", "|---|---|---|"]
    assert learning_rates._Committed("Images").row(1e-4)[1] == 91.5
    assert texts.row("auto")[1] == 80.0
    with pytest.raises(ValueError, match="run in full"):
        texts.row(2e-5)
    monkeypatch.setenv(learning_rates.RERUN_ENV, "sst2,imagenet")
    with pytest.raises(ValueError, match="name data sets among"):
        learning_rates._reruns()


def test_a_learning_rates_rerun_fits_a_missing_seed_whole_and_judges_the_mean(tmp_path, monkeypatch):
    from benchmarks import _harness, learning_rates

    table = ("| lr | head rate | backbone rate | warm-up | epochs | accuracy % | fit s |\n"
             "|---|---|---|---|---|---|---|\n"
             "| auto | 0.001 | 3e-05 | 0.1 | 10 | 80.0 | 1 |\n| 2e-05 | 2e-05 | 2e-05 | 0 | 10 | 84.0 | 1 |\n")
    (tmp_path / "learning_rates.md").write_text(
        f"# t\n\n- date: 2026-01-02T03:04\n\n## SST-2 (all-MiniLM-L6-v2)\n\n{table}")
    monkeypatch.setattr(_harness, "RESULTS", tmp_path)
    monkeypatch.setattr(learning_rates, "RATES", {"sst2": ("auto", 2e-5)})
    monkeypatch.setattr(learning_rates, "SEEDS", {"sst2": (0, 1)})
    monkeypatch.setattr(learning_rates, "_data", lambda dataset, quick: (None,) * 4 + ("a split",))
    monkeypatch.setenv(learning_rates.RERUN_ENV, "sst2")
    fitted = []

    def fit(target, *, dataset, lr, quick, seed):
        fitted.append((lr, seed))
        return {"lr_": {"head": 1e-3, "backbone": 3e-5, "warmup": 0.1}, "epochs": 10, "fit_s": 1.0,
                "accuracy": 0.83 if lr == "auto" else 0.82 + seed / 100}

    monkeypatch.setattr(learning_rates, "run_isolated", fit)
    text, gap = learning_rates._dataset("sst2", quick=False)
    assert fitted == [("auto", 0), ("auto", 1), (2e-5, 1)]  # seed 0's 2e-5 row is carried
    assert "| 2e-05 (from the run of 2026-01-02T03:04) |" in text
    assert "## SST-2 (all-MiniLM-L6-v2), random_state=1" in text
    assert gap == pytest.approx(83.0 - (84.0 + 83.0) / 2)
    assert "Mean over random_state 0, 1: `lr=\"auto\"`: 83.00 %; best hand-set rate 2e-05: 83.50 %" in text


def test_few_shot_means_only_count_draws_every_arm_has():
    from benchmarks.few_shot import draw, summarise

    rows = [{"set": "trec", "k": 8, "draw": d, "arm": arm, "accuracy": acc, "fit_s": 1.0, "predict_s": 0.1}
            for d, arm, acc in [(0, "a", 0.5), (0, "b", 0.7), (1, "a", 0.9)]]  # draw 1 lacks arm b
    cells, means = summarise(rows)
    assert means == [{"k per class": 8, "sets x draws": 1, "a %": 50.0, "b %": 70.0, "a fit s": 1.0, "b fit s": 1.0}]
    assert {c["arm"]: c["draws"] for c in cells} == {"a": 2, "b": 1}
    y = np.array([0] * 10 + [1] * 20)
    rows = draw(y, 4, seed=0)
    assert np.bincount(y[rows]).tolist() == [4, 4] and len(set(rows)) == 8
    with pytest.raises(ValueError, match=r"k=12 rows per class is more than these classes have: \{'0': 10\}"):
        draw(y, 12, seed=0)


def test_few_shot_default_is_the_arm_the_rule_picks():
    from benchmarks.few_shot import with_default

    rows = [{"set": name, "k": k, "draw": 0, "arm": arm, "accuracy": acc, "fit_s": 1.0, "predict_s": 0.1}
            for name, k in [("trec", 8), ("trec", 64), ("hymenoptera", 5)]
            for arm, acc in [("sktransfer frozen head", 0.5), ("sktransfer contrastive", 0.8)]]
    default = {(r["set"], r["k"]): r["accuracy"] for r in with_default(rows) if r["arm"] == "sktransfer default"}
    assert default == {("trec", 8): 0.8, ("trec", 64): 0.5, ("hymenoptera", 5): 0.5}


TINY_MODULES = ("throughput", "lora_vs_full", "inference", "learning_rates", "sequential_transfer", "distillation",
                "multitask", "lr_finder")


def test_every_other_tiny_benchmark_runs_and_writes_its_headline(tmp_path):
    env = {**os.environ, "SKTRANSFER_BENCH_TINY": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--tiny", "--only", ",".join(TINY_MODULES),
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in TINY_MODULES:
        assert f"[benchmarks] {name}: ok" in proc.stdout, proc.stdout[-3000:]
        assert read_headline(tmp_path / f"{name}.md"), name

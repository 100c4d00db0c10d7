"""The learning-rate range test's suggestion against hand-set rates, on two image and three text sets.

Each fit trains the backbone's top two blocks (``freeze_layers=-2``: the frozen prefix is computed once per
data set by the prefix cache, as all fits of a data set run in one process) and the head, for 3 epochs at
batch 32, every other parameter at its default except ``warmup=0.1`` for every fit (what ``lr="find"``
uses with ``warmup="auto"`` when the backbone trains), so that only the rate differs. For each seed,
``lr_find`` (fastai's defaults: 100 batches from 1e-7 to 10) suggests a rate on the training rows alone and
the model is fitted with it (the same model as ``lr="find"``, which runs the same test inside ``fit``), and
each hand-set rate of the grid is fitted with the same seed. The goal: the suggestion within 1 point of the
best hand-set rate (mean over the seeds), for at most one epoch of time.

The data are subsampled so that the full run fits in about 40 minutes of a 2-core CPU: hymenoptera whole
(train -> val); Office-31 amazon one stratified split, 70 % train / 30 % test (not 5-fold); SST-2 1,500
random train phrases -> its test file (872); TREC 1,500 random train questions -> its test file (500);
Amazon kitchen reviews one stratified split, 1,500 train / 500 test. The fastai rules the suggestion did not
use ("steep": the steepest point of the smoothed curve; "minimum": a tenth of the rate at its minimum) are
computed on the same curves and listed, not fitted.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ._harness import (
    SHARED_DATA,
    device_name,
    headline,
    markdown_table,
    read_hymenoptera,
    read_sst2,
    run_isolated,
    synthetic_images,
    synthetic_texts,
    timed,
    tiny,
    tiny_text_backbone,
    write_result,
)

TINY = True
DATASETS = ("hymenoptera", "sst2", "trec", "kitchen", "office31-amazon")
IMAGES = ("hymenoptera", "office31-amazon")
GRID = {"image": (1e-4, 3e-4, 1e-3, 3e-3), "text": (3e-5, 1e-4, 3e-4, 1e-3)}
SEEDS = (0, 1, 2)
EPOCHS = 3
TEXT_ROWS = 1500
RESUME_ENV = "SKTRANSFER_LR_FINDER_RESUME"  # full mode: keep the data sets lr_finder_curves.json already holds
TITLES = {"hymenoptera": "Hymenoptera (EfficientNet-Lite0)", "office31-amazon": "Office-31 amazon (EfficientNet-Lite0)",
          "sst2": "SST-2 (all-MiniLM-L6-v2)", "trec": "TREC (all-MiniLM-L6-v2)",
          "kitchen": "Amazon reviews, kitchen (all-MiniLM-L6-v2)"}


def _tsv(path: Path, text: str, label: str) -> tuple[list[str], list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[text] for r in rows], [r[label] for r in rows]


def _split(X, y, test_size, seed: int = 0):
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)
    return list(X_train), list(y_train), list(X_test), list(y_test)


def _subsample(X, y, n: int, seed: int = 0):
    import numpy as np

    keep = np.sort(np.random.default_rng(seed).choice(len(X), min(n, len(X)), replace=False))
    return [X[i] for i in keep], [y[i] for i in keep]


def _data(dataset: str, quick: bool):
    """(X_train, y_train, X_test, y_test) of ``dataset``; quick mode takes a few hundred rows."""
    from sktransfer import load_image_folder

    if tiny():
        make = synthetic_images if dataset in IMAGES else synthetic_texts
        return (*make(48, seed=0), *make(24, seed=1))
    if dataset == "hymenoptera":
        data = (*read_hymenoptera("train"), *read_hymenoptera("val"))
    elif dataset == "office31-amazon":
        data = _split(*load_image_folder(SHARED_DATA / "office31" / "amazon" / "images"), test_size=0.3)
    elif dataset == "sst2":
        data = (*read_sst2("train", TEXT_ROWS), *read_sst2("test"))
    elif dataset == "trec":
        data = (*_subsample(*_tsv(SHARED_DATA / "trec" / "train.tsv", "text", "label"), TEXT_ROWS),
                *_tsv(SHARED_DATA / "trec" / "test.tsv", "text", "label"))
    else:
        data = _split(*_tsv(SHARED_DATA / "amazon_reviews" / f"{dataset}.tsv", "sentence", "label"), test_size=500)
    if quick:
        data = (*_subsample(*data[:2], 200), *_subsample(*data[2:], 200))
    return data


def _estimator(dataset: str, seed: int, **params):
    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier

    params = {"freeze_layers": -2, "max_epochs": 1 if tiny() else EPOCHS, "warmup": 0.1, "random_state": seed,
              **params}
    if dataset in IMAGES:
        if tiny():
            params |= {"backbone": "test_efficientnet", "pretrained": False}
        return PretrainedImageClassifier(**params)
    if tiny():
        params |= {"backbone": tiny_text_backbone(), "max_length": 16}
    return PretrainedTextClassifier(**params)


def _other_rules(rates, losses) -> dict:
    """fastai's "steep" and "minimum" suggestions on the same (trimmed) curve."""
    import numpy as np

    start = len(rates) // 10
    rates, losses = np.asarray(rates)[start:len(rates) - 5], np.asarray(losses)[start:len(losses) - 5]
    slopes = np.diff(losses) / np.diff(np.log(rates))
    return {"steep": float(rates[int(np.argmin(slopes))]), "minimum": float(rates[int(np.argmin(losses))] / 10)}


def run_dataset(dataset: str, quick: bool) -> dict:
    """Every seed of ``dataset`` in this process: the finder's curve, suggestion and time, and the test accuracy
    and fit time of the suggestion and of each hand-set rate."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    X, y, X_test, y_test = _data(dataset, quick)
    grid = GRID["image" if dataset in IMAGES else "text"]
    seeds = SEEDS[:1] if quick or tiny() else SEEDS
    warm: dict = {}
    with timed(warm, "seconds"):  # the backbone loaded and the frozen prefix computed once, outside the timings
        _estimator(dataset, 0, max_epochs=1).fit(X, y)
    epoch_batches = -(-len(X) // _estimator(dataset, 0).get_params()["batch_size"])
    short_iter = max(20, epoch_batches)  # the shortest test lr_find takes, or one epoch's batches
    runs = []
    for seed in seeds:
        finder: dict = {}
        with timed(finder, "find_s"):
            result = _estimator(dataset, seed).lr_find(X, y)
        with timed(finder, "short_find_s"):
            short = _estimator(dataset, seed).lr_find(X, y, num_iter=short_iter)
        fits = {}
        for lr in dict.fromkeys((result.suggestion, short.suggestion, *grid)):
            record: dict = {}
            clf = _estimator(dataset, seed, lr=lr)
            with timed(record, "fit_s"):
                clf.fit(X, y)
            record["accuracy"] = float(clf.score(X_test, y_test))
            record["epochs"] = int(clf.n_epochs_)
            fits[repr(lr)] = record
        runs.append({"seed": seed, "suggestion": result.suggestion, "batches": len(result.rates),
                     "find_s": finder["find_s"], "short_suggestion": short.suggestion,
                     "short_batches": len(short.rates), "short_find_s": finder["short_find_s"],
                     **_other_rules(result.rates, result.losses), "fits": fits,
                     "curve": [result.rates.tolist(), result.losses.tolist()]})
    return {"n_train": len(X), "n_test": len(X_test), "grid": list(grid), "runs": runs, "prefix_s": warm["seconds"],
            "device": device_name()}


def _section(dataset: str, measured: dict) -> tuple[str, dict]:
    """The markdown section of one data set and its summary figures."""
    import numpy as np

    grid, runs = measured["grid"], measured["runs"]
    short = all("short_suggestion" in run for run in runs)  # sets measured before the one-epoch test have none
    accuracy = lambda run, lr: 100 * run["fits"][repr(lr)]["accuracy"]  # noqa: E731
    rows, costs, short_costs = [], [], []
    for run in runs:
        found = run["fits"][repr(run["suggestion"])]
        epoch_s = found["fit_s"] / found["epochs"]
        row = {"seed": run["seed"], "suggested lr": run["suggestion"], "suggested %": accuracy(run, run["suggestion"])}
        if short:
            row |= {"1-epoch test lr": run["short_suggestion"],
                    "1-epoch test %": accuracy(run, run["short_suggestion"])}
        row |= {f"{lr:g} %": accuracy(run, lr) for lr in grid}
        row |= {"finder s": run["find_s"], "epoch s": epoch_s, "finder / epoch": run["find_s"] / epoch_s,
                "batches": run["batches"], "steep rule": run["steep"], "minimum rule": run["minimum"]}
        if short:
            row |= {"1-epoch test s": run["short_find_s"], "1-epoch test batches": run["short_batches"]}
            short_costs.append(run["short_find_s"] / epoch_s)
        rows.append(row)
        costs.append(run["find_s"] / epoch_s)
    mean = {lr: np.mean([accuracy(run, lr) for run in runs]) for lr in grid}
    best = max(mean, key=mean.get)
    found = float(np.mean([accuracy(run, run["suggestion"]) for run in runs]))
    gap = found - mean[best]
    verdict = (f"Mean over the seeds: suggestion {found:.2f} %, best hand-set rate {best:g} {mean[best]:.2f} % "
               f"(suggestion minus best: {gap:+.2f} points); hand-set means "
               + ", ".join(f"{lr:g} {value:.2f} %" for lr, value in mean.items())
               + f"; the finder cost {np.mean(costs):.1f} epochs of this fit's time.")
    summary = {"gap": gap, "cost": float(np.mean(costs))}
    if short:
        short_found = float(np.mean([accuracy(run, run["short_suggestion"]) for run in runs]))
        summary |= {"short_gap": short_found - mean[best], "short_cost": float(np.mean(short_costs))}
        verdict += (f" The test over {runs[0]['short_batches']} batches (one epoch, at least 20): "
                    f"{short_found:.2f} % ({summary['short_gap']:+.2f} points against the best hand-set rate), "
                    f"costing {summary['short_cost']:.1f} epochs.")
    device = measured.get("device", "the 2-core CPU")
    body = (f"## {TITLES[dataset]}\n\nRun on {device}. {measured['n_train']} training rows, {measured['n_test']} test "
            f"rows; the backbone's load and the frozen prefix's outputs took {measured['prefix_s']:.0f} s once.\n\n"
            f"{markdown_table(rows)}\n\n{verdict}\n")
    return body, summary


def run(quick: bool, out_dir: Path, sets: tuple[str, ...] = DATASETS) -> Path:
    """Run the data sets ``sets`` (each in its own process) and write ``lr_finder.md``, anew after each data set.

    Full mode with ``SKTRANSFER_LR_FINDER_RESUME=1`` keeps the data sets ``lr_finder_curves.json`` already holds.
    """
    import json

    saved = out_dir / "lr_finder_curves.json"
    curves = json.loads(saved.read_text()) if os.environ.get(RESUME_ENV) and saved.exists() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for dataset in sets:
        if dataset not in curves:
            curves[dataset] = run_isolated("benchmarks.lr_finder:run_dataset", dataset=dataset, quick=quick)
            saved.write_text(json.dumps(curves))
        path = write_measured(curves, quick, out_dir)
    return path


def short_clause(summary: dict) -> str:
    """The headline's clause on the one-epoch range test (empty where no set measured it)."""
    parts = [f"{d} {s['short_gap']:+.1f} points, {s['short_cost']:.1f} epochs" for d, s in summary.items()
             if "short_gap" in s]
    return f"; the one-epoch test: {', '.join(parts)}" if parts else ""


def write_measured(curves: dict, quick: bool, out_dir: Path) -> Path:
    """``lr_finder.md`` from the measurements of the data sets in ``curves`` (those not measured yet are named)."""
    sections, summary = [], {}
    for dataset in (d for d in DATASETS if d in curves):
        body, summary[dataset] = _section(dataset, curves[dataset])
        sections.append(body)
    missing = [d for d in DATASETS if d not in curves]
    mode = "tiny" if tiny() else "quick" if quick else "full"
    if missing:
        mode += f" (not measured yet: {', '.join(missing)}; `{RESUME_ENV}=1` measures only those)"
    seeds = len(next(iter(curves.values()))["runs"])
    top = headline(f"lr_find's suggestion minus the best hand-set rate (mean of {seeds} seeds, top 2 blocks trained): "
                   + ", ".join(f"{d} {s['gap']:+.1f} points" for d, s in summary.items())
                   + "; finder cost " + ", ".join(f"{s['cost']:.1f}" for s in summary.values()) + " epochs"
                   + short_clause(summary))
    notes = (f"Mode: {mode}. Each section names the machine it ran on; the CPU sections' timings were taken while "
             "other engineers' jobs loaded the same 2-core CPU (load average above 10), and a GPU runs in bf16 "
             "autocast (`precision=\"auto\"`; on the lent H200 the four data sets ran as concurrent processes "
             "sharing it and its 16 CPU cores, beside the weight-averaging benchmark): compare timings within a data "
             "set only. A second range test per seed runs over one epoch's batches (at least 20) and its suggestion "
             "is fitted too.\n\n"
             + "\n\n".join(__doc__.split("\n\n")[1:]).replace("``", "`") + "\n\n")
    return write_result("lr_finder", "Learning-rate range test: the suggested rate against hand-set rates",
                        top + "\n" + notes + "\n".join(sections), out_dir)


if __name__ == "__main__":
    import sys

    from ._harness import RESULTS

    # python -m benchmarks.lr_finder [--out DIR] [SET ...]: full mode, resuming from DIR's curves (default: the
    # committed ones), measuring the named sets (default: all)
    args = sys.argv[1:]
    out_dir = Path(args.pop(args.index("--out") + 1)) if "--out" in args else RESULTS
    os.environ[RESUME_ENV] = "1"
    print(run(quick=False, out_dir=out_dir, sets=tuple(a for a in args if a != "--out") or DATASETS))

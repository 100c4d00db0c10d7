"""Full fine-tuning at ``lr="auto"`` against hand-set learning rates, on hymenoptera and SST-2.

Every recipe is ``freeze_layers="none"`` with every other parameter at its default (10 epochs, batch 32,
constant schedule, ``warmup="auto"``); only the learning rate changes. ``lr="auto"`` gives the head 1e-3
and the backbone its family's fine-tuning rate (1e-4 for convolutional networks, 3e-5 for transformers)
with a 10 % warm-up; a float gives that one rate to head and backbone alike, without warm-up. The hand-set
rates bracket the published recipes: 2e-5 to 1e-4 for BERT-style models, 1e-4 to 1e-3 for CNNs.

A single fit's accuracy moves by up to 5 points with ``random_state`` alone (SST-2, 5,000 phrases: 85.6
and 80.1 % at 5e-5), more than the gaps to be judged, so in full mode SST-2 is fitted with ``random_state``
0, 1 and 2 and each rate is judged by its mean; hymenoptera, where the gaps are larger, with 0 alone (each
SST-2 seed costs about 40 minutes of a 2-core CPU). The data split never changes.

Each fit runs in a fresh process. Quick mode: subsamples, 2 epochs, one seed (a smoke test of the machinery).
``SKTRANSFER_LR_RERUN=sst2`` (full mode; data sets, comma-separated) refits only those data sets'
``lr="auto"`` rows, after a change of the auto rule, and carries every other row from the committed
``learning_rates.md`` (marked with the date of the run that measured it); a section (a seed) that the
committed file lacks is fitted whole.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._harness import (
    carried_text,
    committed_run,
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
RATES = {"hymenoptera": ("auto", 1e-4, 3e-4, 1e-3), "sst2": ("auto", 2e-5, 5e-5, 1e-4)}
SIZES = {"quick": {"hymenoptera": 64, "sst2": 500}, "full": {"hymenoptera": None, "sst2": 5000}}
SEEDS = {"hymenoptera": (0,), "sst2": (0, 1, 2)}
TITLES = {"hymenoptera": "Hymenoptera (EfficientNet-Lite0)", "sst2": "SST-2 (all-MiniLM-L6-v2)"}
RERUN_ENV = "SKTRANSFER_LR_RERUN"


def _data(dataset: str, quick: bool):
    if tiny():
        make = synthetic_images if dataset == "hymenoptera" else synthetic_texts
        return (*make(24, seed=0), *make(24, seed=1), "synthetic, 24 train / 24 test (tiny mode)")
    n = SIZES["quick" if quick else "full"][dataset]
    if dataset == "hymenoptera":
        X, y = read_hymenoptera("train")
        X_test, y_test = read_hymenoptera("val")
        split = "train (245 images) -> val (153)"
        if n is not None:
            X, y, split = X[:: len(X) // n + 1], y[:: len(y) // n + 1], "a subsample of train -> val (153)"
        return X, y, X_test, y_test, split
    return (*read_sst2("train", n), *read_sst2("test"), f"random {n:,} of 60,614 train phrases -> test.tsv (872)")


def fit_one(dataset: str, lr, quick: bool, seed: int = 0) -> dict:
    """Fit one full fine-tuning at ``lr`` with ``random_state=seed``; accuracy on the test split, fit time and
    the rates used."""
    import torch

    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier

    torch.manual_seed(seed)
    X, y, X_test, y_test, _ = _data(dataset, quick)
    params = {"freeze_layers": "none", "lr": lr, "random_state": seed}
    if tiny():
        params |= ({"backbone": "test_efficientnet", "pretrained": False} if dataset == "hymenoptera"
                   else {"backbone": tiny_text_backbone(), "max_length": 16})
    if quick or tiny():
        params["max_epochs"] = 2
    cls = PretrainedImageClassifier if dataset == "hymenoptera" else PretrainedTextClassifier
    clf = cls(**params)
    record: dict = {"n_train": len(X)}
    with timed(record, "fit_s"):
        clf.fit(X, y)
    record["accuracy"] = float(clf.score(X_test, y_test))
    record["lr_"] = {k: v for k, v in clf.lr_.items()}
    record["epochs"] = int(clf.n_epochs_)
    return record


def _reruns() -> list[str] | None:
    """The data sets whose auto row alone is refitted, or None for a complete run."""
    value = os.environ.get(RERUN_ENV)
    if not value:
        return None
    datasets = value.split(",")
    if not set(datasets) <= set(RATES):
        raise ValueError(f"{RERUN_ENV}={value!r}: name data sets among {sorted(RATES)}, comma-separated.")
    return datasets


class _Committed:
    """The section ``title`` of the committed ``learning_rates.md``: its table's header and its rows."""

    def __init__(self, title: str):
        self.title = title
        text, self.date = committed_run("learning_rates")
        self.present = f"## {title}\n" in text
        self.section = text.split(f"## {title}\n", 1)[-1].split("\n## ", 1)[0] if self.present else ""
        lines = self.section.splitlines()
        if not self.present:
            return
        start = next(i for i, line in enumerate(lines) if line.startswith("| lr |"))
        self.header = lines[start: start + 2]

    def row(self, lr) -> tuple[str, float]:
        """The table row of ``lr``, marked with its run's date, and its accuracy."""
        line = carried_text(self.section, markdown_table([{"lr": lr}]).splitlines()[-1][2:-2], self.date)
        if line is None:
            raise ValueError(f"{RERUN_ENV}: lr={lr} of {self.title!r} is not in the committed "
                             "learning_rates.md; run in full.")
        columns = [cell.strip() for cell in self.header[0].split("|")]
        return line, float(line.split("|")[columns.index("accuracy %")].strip())


def _seeds(dataset: str, quick: bool) -> tuple[int, ...]:
    return (0,) if quick or tiny() else SEEDS[dataset]


def _title(dataset: str, seed: int) -> str:
    return TITLES[dataset] + (f", random_state={seed}" if seed else "")


def _section(dataset: str, seed: int, quick: bool) -> tuple[str, dict]:
    """The section of one data set and seed, and its accuracy per learning rate."""
    *_, split = _data(dataset, quick)
    title = _title(dataset, seed)
    rows, carried = [], {}
    reruns = None if quick or tiny() else _reruns()
    committed = _Committed(title) if reruns is not None else None
    for lr in RATES[dataset][: 2 if tiny() else None]:
        if committed is not None and committed.present and (lr != "auto" or dataset not in reruns):
            carried[lr] = committed.row(lr)
            continue
        r = run_isolated("benchmarks.learning_rates:fit_one", dataset=dataset, lr=lr, quick=quick, seed=seed)
        rates = r["lr_"]
        rows.append({"lr": lr, "head rate": rates["head"], "backbone rate": rates["backbone"],
                     "warm-up": rates["warmup"], "epochs": r["epochs"], "accuracy %": 100 * r["accuracy"],
                     "fit s": r["fit_s"]})
    measured = {row["lr"]: row["accuracy %"] for row in rows} | {lr: acc for lr, (_, acc) in carried.items()}
    table = "\n".join([markdown_table(rows) if rows else "\n".join(committed.header),
                       *(line for line, _ in carried.values())])
    body = f"## {title}\n\nSplit: {split}.\n\n{table}\n\n{_verdict(measured)[0]}.\n"
    return body, measured


def _verdict(accuracy: dict, what: str = "") -> tuple[str, float]:
    """``lr="auto"`` against the best hand-set rate, from accuracies per rate: the sentence and auto minus best."""
    hand_set = {lr: value for lr, value in accuracy.items() if lr != "auto"}
    best_lr = max(hand_set, key=hand_set.get)
    gap = accuracy["auto"] - hand_set[best_lr]
    return (f"{what}`lr=\"auto\"`: {accuracy['auto']:.2f} %; best hand-set rate {best_lr}: {hand_set[best_lr]:.2f} % "
            f"(auto minus best: {gap:+.2f} points)"), gap


def _dataset(dataset: str, quick: bool) -> tuple[str, float]:
    """Every seed's section of ``dataset`` (and their means), and auto minus the best hand-set rate."""
    seeds = _seeds(dataset, quick)
    bodies, runs = zip(*(_section(dataset, seed, quick) for seed in seeds))
    mean = {lr: sum(run[lr] for run in runs) / len(runs) for lr in runs[0]}
    verdict, gap = _verdict(mean, f"Mean over random_state {', '.join(map(str, seeds))}: ")
    return "\n".join(bodies) + (f"\n{verdict}.\n" if len(seeds) > 1 else ""), gap


def run(quick: bool, out_dir: Path) -> Path:
    """Fit every rate on both data sets and write ``learning_rates.md``."""
    image, image_gap = _dataset("hymenoptera", quick)
    text, text_gap = _dataset("sst2", quick)
    mode = "tiny" if tiny() else "quick" if quick else "full"
    seeds = ", ".join(map(str, _seeds("sst2", quick)))
    top = headline(f"lr=\"auto\" minus the best hand-set rate: hymenoptera {image_gap:+.1f} points, SST-2 "
                   f"{text_gap:+.1f} points (random_state {seeds}; full fine-tuning)")
    if mode == "full" and _reruns():
        mode += (f" ({RERUN_ENV}={','.join(_reruns())}: the lr=\"auto\" rows of these data sets, and the sections "
                 "the committed file lacked, ran now; every other row comes from the run named in it)")
    notes = f"Mode: {mode}. " + "\n\n".join(__doc__.split(chr(10) * 2)[1:3]).replace("``", "`") + "\n\n"
    return write_result("learning_rates", "Learning rates for full fine-tuning: auto against hand-set",
                        top + "\n" + notes + image + "\n" + text, out_dir)

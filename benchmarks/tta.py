"""Test-time augmentation (``tta``) against the plain pass, on hymenoptera and Office-31 amazon.

Two recipes on EfficientNet-Lite0: the frozen default (the linear head solved on cached embeddings) and a
fine-tuning of the backbone's top three blocks (``freeze_layers=-3``, 5 epochs, every other parameter at its
default). Each fitted model predicts the test images twice: plain (``tta=None``) and with ``tta=TTA()`` (4
views: the mirror, the centre region of 1/1.25 of each side, that region mirrored, the top-left region;
``beta=0.25``), set on the fitted model with ``set_params``. The frozen model is deterministic, so it is fitted
once; its views' embeddings are then in the feature cache, and the other view counts and blends (1, 2 and 4
views; ``beta`` 0.25 and 0) are read from it at no cost. The fine-tuned recipe is fitted with ``random_state``
0, 1 and 2 on hymenoptera, 0 alone on Office-31 (the CPU time this run had). Hymenoptera: train (245) -> val
(153). Office-31 amazon: a stratified split, 10 training and 5 test images of each of the 31 classes (310 -> 155;
seeded, the same for every fit). Times are wall-clock seconds of ``predict_proba`` on the test images; the views
are computed afresh (the frozen model's plain test embeddings come from the cache in its TTA call).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._harness import (
    SHARED_DATA,
    device_name,
    headline,
    markdown_table,
    read_hymenoptera,
    synthetic_images,
    tiny,
    write_result,
)

TINY = True
TINY_BACKBONE = {"backbone": "test_efficientnet", "pretrained": False}

FINE_TUNING = {"freeze_layers": -3, "max_epochs": 5}
SEEDS = {"hymenoptera": (0, 1, 2), "office31-amazon": (0,)}
FROZEN_VARIANTS = {"1 view (mirror), beta 0.25": (1, 0.25), "2 views, beta 0.25": (2, 0.25),
                   "4 views, beta 0.25 (TTA())": (4, 0.25), "4 views, beta 0 (views alone)": (4, 0.0)}
LOAD_NOTE = ("Timing caveat: measured on a shared 2-core CPU while about five other engineers' tests and "
             "benchmarks loaded it (load average about 15); the ratios, not the seconds, are the figure to read.")


def _office(per_class_train: int, per_class_test: int):
    from sktransfer import load_image_folder

    X, y = load_image_folder(SHARED_DATA / "office31" / "amazon" / "images")
    rng = np.random.default_rng(0)
    train, test = [], []
    for label in sorted(set(y)):
        rows = rng.permutation([i for i, v in enumerate(y) if v == label])
        train += rows[:per_class_train].tolist()
        test += rows[per_class_train:per_class_train + per_class_test].tolist()
    pick = lambda rows: ([X[i] for i in rows], [y[i] for i in rows])  # noqa: E731
    return (*pick(train), *pick(test))


def _data(dataset: str, quick: bool):
    if tiny():
        return (*synthetic_images(24, seed=0), *synthetic_images(12, seed=1))
    if dataset == "hymenoptera":
        X, y = read_hymenoptera("train")
        X_test, y_test = read_hymenoptera("val")
        if quick:
            X, y, X_test, y_test = X[::6], y[::6], X_test[::5], y_test[::5]
        return X, y, X_test, y_test
    return _office(3, 2) if quick else _office(10, 5)


def _timed_proba(clf, X) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    proba = clf.predict_proba(X)
    return proba, time.perf_counter() - start


def _pair(name: str, seed, y_true, plain, tta, plain_s: float, tta_s: float) -> dict:
    from scipy.stats import binomtest

    right_plain, right_tta = plain == y_true, tta == y_true
    gained, lost = int((right_tta & ~right_plain).sum()), int((right_plain & ~right_tta).sum())
    return {"recipe": name, "seed": seed, "n": len(y_true), "plain %": 100 * right_plain.mean(),
            "TTA %": 100 * right_tta.mean(), "TTA right, plain wrong": gained, "plain right, TTA wrong": lost,
            "exact McNemar p": binomtest(gained, gained + lost).pvalue if gained + lost else 1.0,
            "plain predict s": plain_s, "TTA predict s": tta_s, "time ratio": tta_s / plain_s}


def _frozen(dataset: str, quick: bool) -> tuple[list[dict], list[dict]]:
    from sktransfer import TTA, PretrainedImageClassifier, feature_cache

    X, y, X_test, y_test = _data(dataset, quick)
    y_test = np.asarray(y_test)
    feature_cache.clear()
    clf = PretrainedImageClassifier(random_state=0, **(TINY_BACKBONE if tiny() else {})).fit(X, y)
    plain, plain_s = _timed_proba(clf, X_test)
    tta, tta_s = _timed_proba(clf.set_params(tta=TTA()), X_test)
    labels = lambda proba: clf.classes_[proba.argmax(axis=1)]  # noqa: E731
    pairs = [_pair("frozen default", "-", y_test, labels(plain), labels(tta), plain_s, tta_s)]
    variants = [{"variant": "plain (tta=None)", "accuracy %": 100 * np.mean(labels(plain) == y_test)}]
    for name, (n_views, beta) in FROZEN_VARIANTS.items():
        proba = clf.set_params(tta=TTA(n_views=n_views, beta=beta)).predict_proba(X_test)  # cached views
        variants.append({"variant": name, "accuracy %": 100 * np.mean(labels(proba) == y_test)})
    return pairs, variants


def _paired_fit(recipe: str, label, params: dict, X, y, X_test, y_test) -> dict:
    """Fit ``params``, predict ``X_test`` plain and with ``TTA()``, and pair the two."""
    from sktransfer import TTA, PretrainedImageClassifier

    clf = PretrainedImageClassifier(**params, **(TINY_BACKBONE if tiny() else {})).fit(X, y)
    plain, plain_s = _timed_proba(clf, X_test)
    tta, tta_s = _timed_proba(clf.set_params(tta=TTA()), X_test)
    labels = lambda proba: clf.classes_[proba.argmax(axis=1)]  # noqa: E731
    return _pair(recipe, label, np.asarray(y_test), labels(plain), labels(tta), plain_s, tta_s)


def _fine_tuned(dataset: str, quick: bool, seed: int) -> dict:
    params = {**FINE_TUNING, "max_epochs": 1} if quick else FINE_TUNING
    return _paired_fit("top 3 blocks fine-tuned", seed, {**params, "random_state": seed}, *_data(dataset, quick))


def run_office31_folds(out_dir: Path, seeds: tuple = (0, 1, 2), folds: int = 5) -> Path:
    """The issue's protocol on Office-31 amazon: stratified 5-fold over all 2,817 images, the frozen default once per
    fold (the feature cache cleared first, so its times hold no cached test images), then the fine-tuned recipe per
    seed and fold; writes ``tta_office31.md`` after each fit, so an interrupted run reports what it measured."""
    from sklearn.model_selection import StratifiedKFold

    from sktransfer import feature_cache, load_image_folder

    X, y = load_image_folder(SHARED_DATA / "office31" / "amazon" / "images")
    y = np.asarray(y)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y))
    data = lambda fold: ([X[i] for i in splits[fold][0]], y[splits[fold][0]],  # noqa: E731
                         [X[i] for i in splits[fold][1]], y[splits[fold][1]])
    frozen, tuned = [], []
    for fold in range(folds):
        feature_cache.clear()
        frozen.append(_paired_fit("frozen default", f"fold {fold}", {"random_state": 0}, *data(fold)))
        path = _write_folds(frozen, tuned, seeds, folds, out_dir)
    for seed in seeds:
        for fold in range(folds):
            tuned.append(_paired_fit("top 3 blocks fine-tuned", f"fold {fold}, seed {seed}",
                                     {**FINE_TUNING, "random_state": seed}, *data(fold)))
            path = _write_folds(frozen, tuned, seeds, folds, out_dir)
    return path


def _write_folds(frozen: list[dict], tuned: list[dict], seeds: tuple, folds: int, out_dir: Path) -> Path:
    rows = [_summary(fits) for fits in (frozen, tuned) if fits]
    gains = "; ".join(f"{row['recipe']} ({row['fits']} fits) {row['gain (mean)']:+.2f} (fits {row['gain (min)']:+.1f} "
                      f"to {row['gain (max)']:+.1f}; McNemar sums {row['TTA right, plain wrong (sum)']} gained / "
                      f"{row['plain right, TTA wrong (sum)']} lost)" for row in rows)
    planned = f"{folds} frozen and {folds * len(seeds)} fine-tuned fits planned"
    top = headline(f"Office-31 amazon, 5-fold: TTA() minus plain, accuracy points: {gains}; prediction "
                   f"{np.mean([r['time ratio (mean)'] for r in rows]):.1f}x as long ({planned})")
    body = (f"{top}\nThe fine-tuned recipe: {FINE_TUNING}, random_state {seeds}, every other parameter at its "
            f"default; the frozen default with random_state 0. Fitted and timed on {device_name()} (a GPU runs in "
            "bf16 autocast, `precision=\"auto\"`), while other work loaded it: read the time ratios, not the seconds. "
            "Folds: `StratifiedKFold(5, shuffle=True, random_state=0)`; the fine-tuned fits run seed by seed, all "
            f"folds of a seed before the next.\n\n## Summary\n\n{markdown_table(rows)}\n\n## Every fit\n\n"
            f"{markdown_table(frozen + tuned)}\n")
    return write_result("tta_office31", "Test-time augmentation on Office-31 amazon, 5-fold", body, out_dir)


def _summary(pairs: list[dict]) -> dict:
    gains = np.array([p["TTA %"] - p["plain %"] for p in pairs])
    return {"recipe": pairs[0]["recipe"], "fits": len(pairs),
            "plain % (mean)": np.mean([p["plain %"] for p in pairs]),
            "TTA % (mean)": np.mean([p["TTA %"] for p in pairs]),
            "gain (mean)": gains.mean(), "gain (min)": gains.min(), "gain (max)": gains.max(),
            "TTA right, plain wrong (sum)": sum(p["TTA right, plain wrong"] for p in pairs),
            "plain right, TTA wrong (sum)": sum(p["plain right, TTA wrong"] for p in pairs),
            "time ratio (mean)": np.mean([p["time ratio"] for p in pairs])}


def run(quick: bool, out_dir: Path) -> Path:
    """Fit both recipes on both data sets, predict with and without TTA, and write ``tta.md``."""
    import torch

    torch.set_num_threads(2)
    sections, summaries = [], []
    for dataset in ("hymenoptera",) if tiny() else ("hymenoptera", "office31-amazon"):
        pairs, variants = _frozen(dataset, quick)
        tuned = [_fine_tuned(dataset, quick, seed) for seed in SEEDS[dataset][: 1 if quick else None]]
        rows = [_summary(pairs), _summary(tuned)]
        summaries += [{"data": dataset, **row} for row in rows]
        sections.append(f"## {dataset}\n\nEach fit (paired: the same test images, plain and with TTA):\n\n"
                        f"{markdown_table(pairs + tuned)}\n\nThe frozen default's other view counts and blends "
                        f"(from the cached views):\n\n{markdown_table(variants)}\n")
        path = _write(quick, out_dir, summaries, sections)  # after each data set: a late failure keeps the first
    return path


def _write(quick: bool, out_dir: Path, summaries: list[dict], sections: list[str]) -> Path:
    gains = {(s["data"], s["recipe"]): f"{s['gain (mean)']:+.2f}" for s in summaries}
    ratio = np.mean([s["time ratio (mean)"] for s in summaries])
    top = headline(
        "TTA() (4 views, beta 0.25) minus plain, accuracy points: hymenoptera frozen "
        f"{gains.get(('hymenoptera', 'frozen default'), '?')}, fine-tuned "
        f"{gains.get(('hymenoptera', 'top 3 blocks fine-tuned'), '?')}; "
        f"Office-31 amazon frozen {gains.get(('office31-amazon', 'frozen default'), 'not run')}, fine-tuned "
        f"{gains.get(('office31-amazon', 'top 3 blocks fine-tuned'), 'not run')}; prediction {ratio:.1f}x as long "
        "(shared CPU)")
    mode = "tiny" if tiny() else "quick" if quick else "full"
    notes = f"Mode: {mode}. " + __doc__.split("\n\n", 1)[1].replace("``", "`")
    body = (f"{top}\n{notes}\n{LOAD_NOTE}\n\n## Summary\n\n{markdown_table(summaries)}\n\n" + "\n".join(sections))
    return write_result("tta", "Test-time augmentation: accuracy with and without, and its cost", body, out_dir)


if __name__ == "__main__":
    import sys

    from ._harness import QUICK_RESULTS, RESULTS

    if "--office31-folds" in sys.argv:
        print(run_office31_folds(RESULTS))
    else:
        print(run(quick="--full" not in sys.argv, out_dir=RESULTS if "--full" in sys.argv else QUICK_RESULTS))

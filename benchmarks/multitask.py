"""Multi-task classification: one model for two targets against one model per target, at the same budget.

Data: Amazon reviews (texts of all four domains; targets: domain, 4 classes, and sentiment, 2) and
Office-31 (images of all three domains; targets: object class, 31, and domain, 3). Each set is split
once (seeded, stratified on both targets): ``TEST_FRACTION`` is the test set.

Recipes, each run as one multi-task model (``y`` a two-column DataFrame) and as one model per target
with the same parameters (same backbone, epochs, batch size, rates): ``frozen``, the defaults (a frozen
backbone, each output's linear head solved to convergence on the cached embeddings); ``fine-tuned``,
the top backbone block trains (``freeze_layers=-1``, its frozen lower blocks' outputs cached) with a
linear head, by mini-batch epochs. The
multi-task model shares one backbone between both targets; a frozen backbone's linear heads are the
same problem either way (it separates across outputs), so there the difference is time. Times: fit,
and predict on the test set; "one per target" sums its two models. Each fit runs in a fresh process.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ._harness import (
    SHARED_DATA,
    headline,
    markdown_table,
    run_isolated,
    synthetic_images,
    synthetic_texts,
    timed,
    tiny,
    tiny_text_backbone,
    write_result,
)

TINY = True
TEST_FRACTION = 0.3
TARGETS = {"amazon_reviews": ("domain", "sentiment"), "office31": ("object", "domain")}
RECIPES = {"frozen": {}, "fine-tuned": {"freeze_layers": -1}}
MODES = {  # per data set: samples drawn before the split (None: all), epochs of the fine-tuned recipe
    "quick": {"amazon_reviews": 800, "office31": 400, "epochs": 2},
    "full": {"amazon_reviews": None, "office31": None, "epochs": 3},
}


# ------------------------------------------------------------------ data
def _read_reviews() -> tuple[list[str], np.ndarray]:
    root = SHARED_DATA / "amazon_reviews"
    texts, rows = [], []
    for domain in ("books", "dvd", "electronics", "kitchen"):
        path = root / f"{domain}.tsv"
        if not path.exists():
            raise FileNotFoundError(path)
        with open(path, newline="") as f:
            for sentence, label in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
                texts.append(sentence)
                rows.append((domain, "positive" if int(label) == 1 else "negative"))
    return texts, np.array(rows, dtype=object)


def _read_office() -> tuple[list[str], np.ndarray]:
    from sktransfer import load_image_folder

    paths, rows = [], []
    for domain in ("amazon", "dslr", "webcam"):
        root = SHARED_DATA / "office31" / domain / "images"
        if not root.exists():
            raise FileNotFoundError(root)
        X, y = load_image_folder(root)
        paths += list(X)
        rows += [(label, domain) for label in y]
    return paths, np.array(rows, dtype=object)


def _synthetic(dataset: str) -> tuple[list, np.ndarray]:
    """Tiny mode: 48 samples; the first target is learnable (brightness or sentiment), the second a pattern."""
    if dataset == "office31":
        X, y = synthetic_images(48, seed=0)
        X = list(X)
    else:
        X, y = synthetic_texts(48, seed=0)
    second = np.array(["a", "b", "c"])[np.arange(48) // 2 % 3]
    return X, np.column_stack([np.asarray(y).astype(str), second]).astype(object)


def _data(dataset: str, quick: bool):
    """Train and test inputs, their targets as two-column DataFrames, and a description of the split."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    if tiny():
        X, Y = _synthetic(dataset)
        described = "synthetic, 48 samples (tiny mode)"
    else:
        X, Y = _read_reviews() if dataset == "amazon_reviews" else _read_office()
        n = MODES["quick" if quick else "full"][dataset]
        described = f"all {len(X):,} samples"
        if n is not None and n < len(X):
            keep = np.sort(np.random.default_rng(0).choice(len(X), n, replace=False))
            X, Y, described = [X[i] for i in keep], Y[keep], f"a random {n:,} of {len(X):,} samples"
    strata = ["|".join(map(str, row)) for row in Y]
    _, counts = np.unique(strata, return_counts=True)
    train, test = train_test_split(np.arange(len(X)), test_size=TEST_FRACTION, random_state=0,
                                   stratify=strata if counts.min() >= 2 else None)
    frame = lambda idx: pd.DataFrame(Y[idx], columns=list(TARGETS[dataset]))  # noqa: E731
    split = f"{described}, {len(train):,} train / {len(test):,} test (seeded, stratified on both targets)"
    return [X[i] for i in train], frame(train), [X[i] for i in test], frame(test), split


# ------------------------------------------------------------------ one fit
def fit_one(dataset: str, recipe: str, column: str | None, quick: bool) -> dict:
    """Fit one model (both targets when ``column`` is None); per-target test accuracy, fit and predict time."""
    import torch

    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier

    torch.manual_seed(0)
    X, Y, X_test, Y_test, _ = _data(dataset, quick)
    params = {**RECIPES[recipe], "random_state": 0}
    if recipe == "fine-tuned":
        params["max_epochs"] = 2 if tiny() else MODES["quick" if quick else "full"]["epochs"]
    if dataset == "amazon_reviews":
        cls = PretrainedTextClassifier
        params |= {"backbone": tiny_text_backbone(), "max_length": 16} if tiny() else {"max_length": 128}
    else:
        cls = PretrainedImageClassifier
        if tiny():
            params |= {"backbone": "test_efficientnet", "pretrained": False}
    clf = cls(**params)
    y = Y if column is None else Y[column]
    record: dict = {}
    with timed(record, "fit_s"):
        clf.fit(X, y)
    with timed(record, "predict_s"):
        pred = clf.predict(X_test)
    pred = np.asarray(pred).reshape(len(X_test), -1)
    names = list(Y.columns) if column is None else [column]
    record["accuracy"] = {name: float(np.mean(pred[:, k].astype(str) == Y_test[name].to_numpy().astype(str)))
                          for k, name in enumerate(names)}
    return record


# ------------------------------------------------------------------ the report
def _section(dataset: str, title: str, quick: bool) -> tuple[str, dict]:
    *_, split = _data(dataset, quick)
    first, second = TARGETS[dataset]
    rows, summary = [], {}
    for recipe in RECIPES:
        multi = run_isolated("benchmarks.multitask:fit_one", dataset=dataset, recipe=recipe, column=None, quick=quick)
        single = [run_isolated("benchmarks.multitask:fit_one", dataset=dataset, recipe=recipe, column=t, quick=quick)
                  for t in (first, second)]
        per_target = {**single[0]["accuracy"], **single[1]["accuracy"]}
        for model, accuracy, fit_s, predict_s in (
            ("multi-task (1 model)", multi["accuracy"], multi["fit_s"], multi["predict_s"]),
            ("one per target (2 models)", per_target, sum(r["fit_s"] for r in single),
             sum(r["predict_s"] for r in single)),
        ):
            rows.append({"recipe": recipe, "model": model, f"{first} acc %": 100 * accuracy[first],
                         f"{second} acc %": 100 * accuracy[second], "fit s": fit_s, "predict s": predict_s})
        summary[recipe] = {"gap": {t: 100 * (multi["accuracy"][t] - per_target[t]) for t in (first, second)},
                           "fit ratio": multi["fit_s"] / sum(r["fit_s"] for r in single),
                           "predict ratio": multi["predict_s"] / sum(r["predict_s"] for r in single)}
    gaps = "; ".join(
        f"{recipe}: multi-task minus one-per-target {', '.join(f'{t} {g:+.1f}' for t, g in s['gap'].items())} "
        f"points, fit time x{s['fit ratio']:.2f}, predict time x{s['predict ratio']:.2f}"
        for recipe, s in summary.items())
    body = f"## {title}\n\nSplit: {split}.\n\n{markdown_table(rows)}\n\n{gaps}.\n"
    return body, summary


def run(quick: bool, out_dir: Path) -> Path:
    """Fit each recipe as one multi-task model and as one model per target, on both data sets; write the result."""
    text, text_summary = _section("amazon_reviews", "Amazon reviews: domain and sentiment (all-MiniLM-L6-v2)", quick)
    image, image_summary = _section("office31", "Office-31: object class and domain (EfficientNet-Lite0)", quick)
    mode = "tiny" if tiny() else "quick" if quick else "full"
    tuned = {name: s["fine-tuned"] for name, s in (("Amazon reviews", text_summary), ("Office-31", image_summary))}
    top = headline("fine-tuned, multi-task against one model per target: " + "; ".join(
        f"{name} accuracy {', '.join(f'{t} {g:+.1f}' for t, g in s['gap'].items())} points, "
        f"fit time x{s['fit ratio']:.2f}, predict time x{s['predict ratio']:.2f}" for name, s in tuned.items()))
    notes = f"Mode: {mode}. " + "\n\n".join(__doc__.split(chr(10) * 2)[1:3]).replace("``", "`") + "\n\n"
    return write_result("multitask", "Multi-task classification: one model for two targets against one per target",
                        top + "\n" + notes + text + "\n" + image, out_dir)

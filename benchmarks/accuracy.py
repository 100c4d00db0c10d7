"""Accuracy and cost of sktransfer's recipes against the baselines, on hymenoptera (images) and SST-2 (text).

Each recipe runs in a fresh process (``run_isolated``), so its wall time and peak memory stand alone.
Quick mode: small subsamples, feature extraction and the baselines. Full mode: every recipe.

``SKTRANSFER_ACCURACY_RERUN=frozen`` (full mode) reruns only the recipes whose backbone stays frozen (the
baselines, the default and the previous default, and the cross-validated sets), which a change of the
frozen head's defaults can move, and carries every fine-tuning recipe's row and report over from the
committed ``accuracy.md``, marked as such with its date: the fine-tuning recipes take about an hour.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._harness import (
    RESULTS,
    SHARED_DATA,
    carried_text,
    committed_run,
    headline,
    markdown_table,
    paired_comparison,
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

TINY = True  # honours the runner's --tiny (tiny random backbones, synthetic data)
# Baselines and feature extraction train on a subsample; fine-tuning MiniLM (about 65 phrases/s on 2 CPU
# cores with length-grouped batches) trains on all 60,614 phrases for one epoch in full mode (~16 min unloaded).
SST2_TRAIN = {"quick": 2000, "full": 5000}
IMAGE_EPOCHS, IMAGE_LR, BATCH = 3, 3e-4, 32
TEXT_FINETUNE = dict(freeze_layers="none", lr=1e-4, head_lr=1e-3, max_epochs=1, batch_size=BATCH, max_length=64,
                     lr_schedule="linear", warmup=0.1, train_on="all")
# Issue 4's recipe: partial fine-tuning that trains the head alone for 2 epochs, then opens one more top
# block every 2 epochs (at most 3 in 8 epochs); cosine schedule with warm-up, light augmentation, early stopping.
PARTIAL = dict(freeze_layers="all", unfreeze_every=2, lr=1e-4, head_lr=1e-3, max_epochs=8, lr_schedule="cosine",
               warmup=0.1, augment="light", early_stopping=True, validation_fraction=0.15, patience=3)

DEFAULT = "sktransfer default (frozen backbone, converged head)"
BASELINE = "frozen embeddings + LogisticRegression"
TEXT_BASELINE = "frozen MiniLM embeddings + LogisticRegression"
PREVIOUS = "sktransfer frozen, C=None (10 epochs of AdamW: the previous default)"
IMAGE_RECIPES = {
    BASELINE: "baseline",
    DEFAULT: {},
    PREVIOUS: dict(C=None),
    "sktransfer partial fine-tuning (head first, then up to 3 top blocks; cosine, light augment, early stopping)":
        PARTIAL,
    "sktransfer full fine-tuning (loop's settings)": dict(freeze_layers="none", lr=IMAGE_LR, max_epochs=IMAGE_EPOCHS),
    "hand-written PyTorch loop (full fine-tuning)": "torch",
}
TEXT_RECIPES = {
    "TF-IDF(1-2 gram) + LogisticRegression": "tfidf",
    "TF-IDF(1-2 gram) + LogisticRegression, all 60,614 phrases": "tfidf-all",
    TEXT_BASELINE: "baseline",
    DEFAULT: {},
    PREVIOUS: dict(C=None),
    f"{TEXT_BASELINE}, all 60,614 phrases": "baseline-all",
    f"{DEFAULT}, all 60,614 phrases": dict(train_on="all"),
    "sktransfer full fine-tuning, all 60,614 phrases, 1 epoch": TEXT_FINETUNE,
}
RERUN_ENV = "SKTRANSFER_ACCURACY_RERUN"
FINE_TUNING = {name for name, spec in {**IMAGE_RECIPES, **TEXT_RECIPES}.items()
               if spec == "torch" or isinstance(spec, dict) and "freeze_layers" in spec}
# (data, default recipe, its LogisticRegression baseline on the same frozen embeddings and training set)
PAIRS = [("hymenoptera", DEFAULT, BASELINE), ("SST-2, 5,000 phrases", DEFAULT, TEXT_BASELINE),
         ("SST-2, all phrases", f"{DEFAULT}, all 60,614 phrases", f"{TEXT_BASELINE}, all 60,614 phrases")]
QUICK_RECIPES = {BASELINE, DEFAULT, PREVIOUS, "TF-IDF(1-2 gram) + LogisticRegression", TEXT_BASELINE}


def backbone_params(dataset: str) -> dict:
    """Backbone arguments: the defaults, or tiny random backbones in tiny mode."""
    if not tiny():
        return {}
    if dataset == "hymenoptera":
        return {"backbone": "test_efficientnet", "pretrained": False}
    return {"backbone": tiny_text_backbone(), "max_length": 16}


def load(dataset: str, quick: bool) -> tuple[list, list, list, list, str]:
    """(X_train, y_train, X_test, y_test, description of the split) of ``dataset``."""
    if tiny():
        make = synthetic_images if dataset == "hymenoptera" else synthetic_texts
        return (*make(24, seed=0), *make(24, seed=1), "synthetic, 24 train / 24 test (tiny mode)")
    if dataset == "hymenoptera":
        return (*read_hymenoptera("train"), *read_hymenoptera("val"), "train (245 images) -> val (153)")
    n = SST2_TRAIN["quick" if quick else "full"]
    return (*read_sst2("train", n), *read_sst2("test"), f"random {n:,} of 60,614 train phrases -> test.tsv (872)")


def make_estimator(dataset: str, spec):
    """The estimator of one recipe (``spec`` is a name of a baseline or sktransfer arguments)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import (
        PretrainedImageClassifier,
        PretrainedImageEmbedder,
        PretrainedTextClassifier,
        PretrainedTextEmbedder,
    )

    image = dataset == "hymenoptera"
    if spec in ("tfidf", "tfidf-all"):
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=2000))
    if spec in ("baseline", "baseline-all"):
        embedder = (PretrainedImageEmbedder if image else PretrainedTextEmbedder)(**backbone_params(dataset))
        return make_pipeline(embedder, LogisticRegression(max_iter=2000))
    if spec == "torch":
        return HandWrittenFineTuning(epochs=IMAGE_EPOCHS, lr=IMAGE_LR, batch_size=BATCH)
    cls = PretrainedImageClassifier if image else PretrainedTextClassifier
    params = {k: v for k, v in spec.items() if k != "train_on"}
    return cls(**{"batch_size": BATCH, "random_state": 0, **params, **backbone_params(dataset)})


def run_recipe(dataset: str, recipe: str, quick: bool) -> dict:
    """Fit one recipe on the training split and predict the test split; timings and predictions."""
    import torch

    torch.manual_seed(0)
    X_train, y_train, X_test, y_test, _ = load(dataset, quick)
    spec = (IMAGE_RECIPES if dataset == "hymenoptera" else TEXT_RECIPES)[recipe]
    if (spec in ("tfidf-all", "baseline-all") or isinstance(spec, dict) and spec.get("train_on") == "all") and not (
            tiny() or quick):
        X_train, y_train = read_sst2("train")
    record: dict = {"n_train": len(X_train), "n_test": len(X_test)}
    estimator = make_estimator(dataset, spec)
    with timed(record, "fit_s"):
        estimator.fit(X_train, y_train)
    with timed(record, "predict_s"):
        y_pred = estimator.predict(X_test)
    return {**record, "y_true": [str(v) for v in y_test], "y_pred": [str(v) for v in y_pred]}


class HandWrittenFineTuning:
    """Full fine-tuning written by hand, the PyTorch transfer-learning tutorial's way.

    The same backbone and weights as sktransfer's default (timm ``tf_efficientnet_lite0`` with the
    packaged ImageNet weights), the same eval preprocessing, a new linear head, AdamW, shuffled batches.
    """

    def __init__(self, epochs: int, lr: float, batch_size: int):
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size

    def _model(self):
        import timm

        from sktransfer._backbones import _packaged_efficientnet_lite0

        if tiny():
            return timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
        return _packaged_efficientnet_lite0(pretrained=True)

    def _loader(self, X, y, shuffle: bool):
        import torch

        from sktransfer._image_data import load_image

        transform = self.transform_
        data = [(x, t) for x, t in zip(X, y)]
        collate = lambda batch: (  # noqa: E731
            torch.stack([transform(load_image(x, 0)) for x, _ in batch]), torch.tensor([t for _, t in batch]))
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate)

    def fit(self, X, y):
        import timm
        import torch
        from torch import nn

        backbone = self._model()
        self.transform_ = timm.data.create_transform(**timm.data.resolve_model_data_config(backbone), is_training=False)
        self.classes_ = sorted(set(y))
        self.model_ = nn.Sequential(backbone, nn.Linear(backbone.num_features, len(self.classes_)))
        optimizer = torch.optim.AdamW(self.model_.parameters(), lr=self.lr, weight_decay=0.01)
        targets = [self.classes_.index(t) for t in y]
        self.model_.train()
        for _ in range(self.epochs):
            for images, labels in self._loader(X, targets, shuffle=True):
                optimizer.zero_grad()
                nn.functional.cross_entropy(self.model_(images), labels).backward()
                optimizer.step()
        return self

    def predict(self, X):
        import torch

        self.model_.eval()
        with torch.no_grad():
            indices = [self.model_(images).argmax(1) for images, _ in self._loader(X, [0] * len(X), shuffle=False)]
        return [self.classes_[i] for i in torch.cat(indices).tolist()]


REVIEW_DOMAINS = ("books", "dvd", "electronics", "kitchen")
CV_FOLDS, CV_QUICK_N = 5, 200


def _cv_data(dataset: str, quick: bool) -> tuple[list, list]:
    """The items and labels of one cross-validated set (a subsample in quick mode)."""
    import csv

    import numpy as np

    from sktransfer import load_image_folder

    if tiny():
        return (synthetic_images if dataset == "office31-amazon" else synthetic_texts)(30, seed=0)
    if dataset == "office31-amazon":
        X, y = load_image_folder(SHARED_DATA / "office31" / "amazon" / "images")
    else:
        with open(SHARED_DATA / "amazon_reviews" / f"{dataset}.tsv", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        X, y = [r[0] for r in rows], [int(r[1]) for r in rows]
    if quick:
        keep = np.random.default_rng(0).choice(len(X), CV_QUICK_N, replace=False)
        X, y = [X[i] for i in keep], [y[i] for i in keep]
    return X, y


def cross_validate(dataset: str, quick: bool) -> dict:
    """5-fold CV of the baseline and the default classifier on embeddings cached once in this process."""
    import time

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    from sktransfer import (
        PretrainedImageClassifier,
        PretrainedImageEmbedder,
        PretrainedTextClassifier,
        PretrainedTextEmbedder,
    )

    image = dataset == "office31-amazon"
    X, y = _cv_data(dataset, quick)
    params = backbone_params("hymenoptera" if image else "sst2")
    embedder, classifier = ((PretrainedImageEmbedder, PretrainedImageClassifier) if image
                            else (PretrainedTextEmbedder, PretrainedTextClassifier))
    start = time.perf_counter()
    embedder(**params).fit(X[:2]).transform(X)  # fills the process-wide feature cache
    result: dict = {"n": len(X), "embed_s": time.perf_counter() - start}
    recipes = {BASELINE: make_pipeline(embedder(**params), LogisticRegression()),
               DEFAULT: classifier(**params, random_state=0), PREVIOUS: classifier(**params, C=None, random_state=0)}
    folds = list(StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0).split(X, y))
    y = np.asarray(y)
    result["y_true"] = [str(v) for v in y]
    for name, estimator in recipes.items():
        start = time.perf_counter()
        y_pred = cross_val_predict(estimator, X, y, cv=folds)
        result[name] = {"scores": [float(np.mean(y_pred[valid] == y[valid])) for _, valid in folds],
                        "seconds": time.perf_counter() - start, "y_pred": [str(v) for v in y_pred]}
    result["mean"] = {name: float(np.mean(result[name]["scores"])) for name in recipes}
    return result


def _cv_section(quick: bool) -> tuple[str, list[tuple[str, float, float]], list[dict]]:
    """Amazon review domains and Office-31 amazon, 5-fold CV within each: accuracy and the CV's fit time;
    the default's and the baseline's gaps, and their paired comparisons."""
    import numpy as np

    sets = REVIEW_DOMAINS[:1] + ("office31-amazon",) if quick or tiny() else REVIEW_DOMAINS + ("office31-amazon",)
    rows, gaps, pairs = [], [], []
    for dataset in sets:
        r = run_isolated("benchmarks.accuracy:cross_validate", dataset=dataset, quick=quick)
        for name in (BASELINE, DEFAULT, PREVIOUS):
            scores = 100 * np.asarray(r[name]["scores"])
            rows.append({"data": dataset, "n": r["n"], "recipe": name, "accuracy % (mean)": scores.mean(),
                         "std": scores.std(), f"{CV_FOLDS} fits s (cached embeddings)": r[name]["seconds"],
                         "embedding pass s (once)": r["embed_s"]})
        gaps.append((dataset, 100 * r["mean"][DEFAULT], 100 * r["mean"][BASELINE]))
        pairs.append(paired_comparison(f"{dataset} ({CV_FOLDS}-fold CV)", r["y_true"], r[DEFAULT]["y_pred"],
                                       r[BASELINE]["y_pred"]))
    body = (f"## Cross-validated: Amazon review domains and Office-31 amazon\n\n{CV_FOLDS}-fold stratified CV "
            "(shuffled, seed 0) within each set; one process per set computes the embeddings once (the feature "
            "cache), then every recipe's CV reads them, so the fit times compare the heads alone. Texts: "
            "all-MiniLM-L6-v2, max_length 128 (the default); images: EfficientNet-Lite0. "
            "LogisticRegression() at scikit-learn's defaults (C=1).\n\n"
            f"{markdown_table(rows)}\n")
    return body, gaps, pairs


def _section(dataset: str, title: str, recipes: dict, quick: bool) -> tuple[str, tuple[str, float], list[dict]]:
    from sklearn.metrics import accuracy_score, classification_report

    *_, split = load(dataset, quick)
    names = [r for r in recipes if not quick or r in QUICK_RECIPES]
    carried = _carried(names) if not quick and os.environ.get(RERUN_ENV) == "frozen" else {}
    results = {name: run_isolated("benchmarks.accuracy:run_recipe", dataset=dataset, recipe=name, quick=quick)
               for name in names if name not in carried}
    base_name = next(n for n in names if "LogisticRegression" in n)
    base = results[base_name]
    base_s = base["fit_s"] + base["predict_s"]
    rows, reports = [], []
    for name, r in results.items():
        total = r["fit_s"] + r["predict_s"]
        rows.append({
            "recipe": name, "train n": r["n_train"], "accuracy %": 100 * accuracy_score(r["y_true"], r["y_pred"]),
            "fit s": r["fit_s"], "predict s": r["predict_s"], "fit samples/s": r["n_train"] / r["fit_s"],
            "predict samples/s": r["n_test"] / r["predict_s"], "peak RSS MiB": r["peak_rss_mb"],
            "time x baseline": total / base_s, "RSS x baseline": r["peak_rss_mb"] / base["peak_rss_mb"],
        })
        report = classification_report(r["y_true"], r["y_pred"], digits=3, zero_division=0)
        reports.append(f"**{name}**\n\n```\n{report}```\n")
    best = max([(row["recipe"], row["accuracy %"]) for row in rows]
               + [(name, accuracy) for name, (_, accuracy, _) in carried.items()], key=lambda pair: pair[1])
    table = "\n".join([markdown_table(rows), *(line for line, _, _ in carried.values())])
    reports += [report for _, _, report in carried.values()]
    note = " Rows marked \"from the run of\" were measured by that earlier full run (see Mode)." if carried else ""
    body = (f"## {title}\n\nSplit: {split}. Baseline for the ratios: {base_name}"
            " (fit + predict time, peak RSS of its process). fit samples/s is train n / fit s, all epochs included."
            f"{note}\n\n{table}\n\n" + "\n".join(reports))
    pairs = [paired_comparison(data, results[a]["y_true"], results[a]["y_pred"], results[b]["y_pred"])
             for data, a, b in PAIRS if a in results and b in results]
    return body, best, pairs


def _carried(names: list[str]) -> dict[str, tuple[str, float, str]]:
    """Fine-tuning recipes' table rows and reports from the committed ``accuracy.md``, each marked with the
    date of the run that measured it; their accuracies."""
    previous, date = committed_run("accuracy")
    carried = {}
    for name in (n for n in names if n in FINE_TUNING):
        line = carried_text(previous, name, date)
        block = carried_text(previous, name, date, template=r"(?s)^\*\*{}\*\*\n\n```\n.*?```\n")
        if line is None or block is None:
            raise ValueError(f"{RERUN_ENV}=frozen: {name!r} is not in {RESULTS / 'accuracy.md'}; run in full.")
        carried[name] = (line, float(line.split("|")[3]), block)
    return carried


def run(quick: bool, out_dir: Path) -> Path:
    """Run every recipe on both data sets and write ``accuracy.md``."""
    if not tiny() and not (SHARED_DATA / "hymenoptera").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA} is absent: the accuracy benchmark needs hymenoptera and sst2.")
    image_body, (image_best, image_acc), image_pairs = _section("hymenoptera", "Hymenoptera (ants vs bees)",
                                                               IMAGE_RECIPES, quick)
    text_body, (text_best, text_acc), text_pairs = _section("sst2", "SST-2 (sentiment)", TEXT_RECIPES, quick)
    cv_body, gaps, cv_pairs = _cv_section(quick)
    pairs = image_pairs + text_pairs + cv_pairs
    cv_line = ", ".join(f"{name} {default:.1f} vs {base:.1f}" for name, default, base in gaps)
    mode = "tiny" if tiny() else "quick" if quick else "full"
    if mode == "full" and os.environ.get(RERUN_ENV) == "frozen":
        mode += (f" ({RERUN_ENV}=frozen: the frozen-backbone recipes and the cross-validation ran now; the "
                 "fine-tuning rows, which the frozen head's defaults do not touch, come from the earlier full run "
                 "named in each)")
    notes = (
        f"Mode: {mode}. Image recipes: default backbone (EfficientNet-Lite0, packaged ImageNet weights), "
        f"batch {BATCH}. Partial fine-tuning: {PARTIAL}. Full fine-tuning: {IMAGE_EPOCHS} epochs of AdamW at "
        f"{IMAGE_LR}, as the hand-written loop (which, unlike sktransfer's default, lets BatchNorm update its "
        "statistics). "
        f"Text fine-tuning: {TEXT_FINETUNE}. Published SST-2 references: DistilBERT 91.3 %, BERT-base 92.7 % "
        "(full 67k training set, GPU).\n\n"
    )
    top = headline(f"hymenoptera {image_acc:.1f} % ({image_best}); SST-2 {text_acc:.1f} % ({text_best}); "
                   f"default classifier vs frozen embeddings + LogisticRegression, {CV_FOLDS}-fold CV: {cv_line}; "
                   f"paired, smallest McNemar p {min(pair['exact McNemar p'] for pair in pairs):.2f}")
    return write_result("accuracy", "Accuracy and cost against the baselines", top + "\n" + notes + image_body
                        + "\n" + text_body + "\n" + cv_body + "\n" + _paired_section(pairs), out_dir)


def _paired_section(pairs: list[dict]) -> str:
    return ("## Paired: the default classifier against frozen embeddings + LogisticRegression\n\n"
            "Both classify the same items from the same frozen embeddings and training sets (the test split, or "
            f"every item once in the {CV_FOLDS}-fold CV): the items only one of them gets right, and the two-sided "
            "exact McNemar p-value of those counts (a binomial test; a small p says the accuracies differ by more "
            "than chance).\n\n" + markdown_table(pairs) + "\n")

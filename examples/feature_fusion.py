"""Feature fusion and probability fusion with sktransfer, on SST-2 (text) and hymenoptera (images).

What is fused, honestly: only two pretrained backbones ship offline (all-MiniLM-L6-v2 for text,
EfficientNet-Lite0 for images), and fusing a pretrained backbone with a randomly initialised one adds
nothing. So the text part fuses two *poolings* of MiniLM (attention-masked mean, and the [CLS] token),
and the image part fuses two *heads* on the same EfficientNet-Lite0 embeddings (linear, and a
256-unit hidden layer with dropout). With several pretrained backbones available the recipes are the
same: one embedder or classifier per backbone.

1. Feature fusion: ``FeatureUnion`` of two embedders concatenates their embeddings, then one
   ``LogisticRegression``.
2. Probability fusion of two classifiers: ``VotingClassifier(voting="soft")`` averages the
   probabilities (``weights=`` for a weighted average); the product rule (a normalised product of
   the probabilities) is computed from the fitted members.

Every embedding is computed once: the classifiers and embedders with the same backbone and pooling
share the feature cache. Needs ``../shared/data`` beside the repository. Run it with
``python examples/feature_fusion.py [n_train_texts]``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, PretrainedTextEmbedder, load_image_folder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read_sst2(split: str, n: int | None = None) -> tuple[list[str], list[int]]:
    with open(DATA / "sst2" / f"{split}.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    if n is not None:
        rows = [rows[i] for i in np.random.default_rng(0).choice(len(rows), n, replace=False)]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def product_rule(voting: VotingClassifier, X) -> np.ndarray:
    """Labels from the normalised product of the members' probabilities (weights as exponents)."""
    weights = voting.weights or [1] * len(voting.estimators_)
    log_p = sum(w * np.log(np.clip(est.predict_proba(X), 1e-12, None)) for w, est in zip(weights, voting.estimators_))
    return voting.classes_[np.argmax(log_p, axis=1)]


def fuse(title: str, members: dict, X_train, y_train, X_test, y_test, weights: list[float]) -> None:
    """Fit each member, then their soft vote (mean and weighted) and product; print test accuracies."""
    print(f"\n{title}")
    for name, clf in members.items():
        print(f"  {name:<44} {clf.fit(X_train, y_train).score(X_test, y_test):.3f}")
    y_test = np.asarray(y_test)
    mean = VotingClassifier(list(members.items()), voting="soft").fit(X_train, y_train)
    weighted = VotingClassifier(list(members.items()), voting="soft", weights=weights).fit(X_train, y_train)
    print(f"  {'probability mean (soft vote)':<44} {mean.score(X_test, y_test):.3f}")
    print(f"  {f'weighted mean, weights={weights}':<44} {weighted.score(X_test, y_test):.3f}")
    print(f"  {'product of probabilities':<44} {np.mean(product_rule(mean, X_test) == y_test):.3f}")


def text_fusion(n_train: int) -> None:
    X_train, y_train = read_sst2("train", n_train)
    X_test, y_test = read_sst2("test")
    print(f"SST-2: {n_train} random training phrases -> test.tsv ({len(X_test)}); backbone all-MiniLM-L6-v2")
    embedders = {
        "mean": PretrainedTextEmbedder(max_length=64),
        "cls": PretrainedTextEmbedder(max_length=64, pooling="cls"),
    }
    print("\nFeature fusion (embeddings + LogisticRegression)")
    for name, features in [("mean pooling", embedders["mean"]), ("cls pooling", embedders["cls"]),
                           ("mean + cls concatenated (FeatureUnion)", FeatureUnion(list(embedders.items())))]:
        pipe = make_pipeline(features, LogisticRegression(max_iter=2000)).fit(X_train, y_train)
        print(f"  {name:<44} {pipe.score(X_test, y_test):.3f}")
    members = {f"{p} pooling, trained head": PretrainedTextClassifier(pooling=p, max_length=64, max_epochs=20,
                                                                       random_state=0) for p in ("mean", "cls")}
    fuse("Probability fusion of two text classifiers (MiniLM mean and cls pooling)", members,
         X_train, y_train, X_test, y_test, weights=[2, 1])


def image_fusion() -> None:
    X_train, y_train = load_image_folder(DATA / "hymenoptera" / "train")
    X_test, y_test = load_image_folder(DATA / "hymenoptera" / "val")
    print(f"\nHymenoptera: train ({len(X_train)}) -> val ({len(X_test)}); backbone EfficientNet-Lite0 for both")
    members = {
        "linear head": PretrainedImageClassifier(max_epochs=20, random_state=0),
        "hidden (256) head, dropout 0.3": PretrainedImageClassifier(head_hidden=(256,), dropout=0.3, max_epochs=20,
                                                                    random_state=0),
    }
    fuse("Probability fusion of two image classifiers (same embeddings, two heads)", members,
         X_train, y_train, X_test, y_test, weights=[1, 1])


if __name__ == "__main__":
    text_fusion(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
    image_fusion()

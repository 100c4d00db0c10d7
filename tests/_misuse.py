"""What the two halves of the misuse battery share: the estimator classes by kind, a fast estimator of any
class with its data, and fitted classifiers (``test_misuse_inputs.py``, ``test_misuse_params.py``)."""

from __future__ import annotations

import numpy as np

from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedImageRegressor,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
)

CLASSIFIERS = [PretrainedImageClassifier, PretrainedTextClassifier]
REGRESSORS = [PretrainedImageRegressor, PretrainedTextRegressor]
EMBEDDERS = [PretrainedImageEmbedder, PretrainedTextEmbedder]
TRAINABLE = CLASSIFIERS + REGRESSORS
ALL_ESTIMATORS = TRAINABLE + EMBEDDERS
TEXT_CLASSES = (PretrainedTextClassifier, PretrainedTextRegressor, PretrainedTextEmbedder)

MULTILABEL = np.tile([[0, 1], [1, 0], [1, 1]], (8, 1))  # 24 rows, like the text data


def estimator_factory(tiny_bert_dir, image_data, text_data):
    """``make(cls, **params)`` -> (a fast ``cls``, its X, labels for a classifier or numbers for a regressor)."""

    def make(cls=PretrainedTextClassifier, **params):
        if cls in TEXT_CLASSES:
            base = {"backbone": tiny_bert_dir, "max_length": 16}
            X, labels = text_data
        else:
            base = {"backbone": "test_efficientnet", "pretrained": False}
            X, labels = image_data
        if cls not in EMBEDDERS:
            base.update(max_epochs=1, random_state=0)
        y = np.asarray(labels) if cls in CLASSIFIERS else np.arange(len(X), dtype=float)
        return cls(**{**base, **params}), X, y

    return make


def fit(est, X, y):
    """``est`` fitted on X (and y, unless it is an embedder)."""
    return est.fit(X) if type(est) in EMBEDDERS else est.fit(X, y)


def fitted_image_classifier():
    """A classifier of dark and light images, its 16 images and their labels."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.integers(0, 80, (8, 32, 32, 3), dtype=np.uint8),
                        rng.integers(170, 255, (8, 32, 32, 3), dtype=np.uint8)])
    y = np.array(["dark"] * 8 + ["light"] * 8)
    params = {"backbone": "test_efficientnet", "pretrained": False, "max_epochs": 1, "random_state": 0}
    return PretrainedImageClassifier(**params).fit(X, y), X, y


def fitted_text_classifier(tiny_bert_dir):
    """A classifier of positive and negative texts, its 12 texts and their labels."""
    X = ["good film", "great acting", "nice plot", "bad film", "awful acting", "poor plot"] * 2
    y = np.array(["pos"] * 3 + ["neg"] * 3 + ["pos"] * 3 + ["neg"] * 3)
    clf = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, max_epochs=1, random_state=0)
    return clf.fit(X, y), X, y

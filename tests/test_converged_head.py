"""The default frozen-backbone classifier and regressor solve their linear head to convergence."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

import sktransfer
from sktransfer import PretrainedImageClassifier, PretrainedImageRegressor, PretrainedTextClassifier


def _standardised(clf, X) -> np.ndarray:
    head = clf.net_.module_.head
    return (clf.transform(X) - head.mean.numpy()) / head.scale.numpy()


@pytest.fixture(scope="module")
def noisy_images():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 255, size=(30, 32, 32, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 10)
    return X, y


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_head_equals_logistic_regression_on_the_standardised_embeddings(noisy_images, tiny_image_params,
                                                                            n_classes):
    X, y = noisy_images
    keep = np.isin(y, ["a", "b", "c"][:n_classes])
    X, y = X[keep], y[keep]
    weights = np.linspace(0.5, 2.0, len(y))
    clf = PretrainedImageClassifier(**tiny_image_params, C=0.3, class_weight="balanced")
    clf.fit(X, y, sample_weight=weights)
    assert clf.C_ == 0.3 and clf.n_epochs_ == 1 and clf.history_[0, "train_loss"] > 0
    Z = _standardised(clf, X)
    reference = LogisticRegression(C=0.3, class_weight="balanced").fit(Z, y, weights)
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(Z), atol=2e-4)


def test_multilabel_and_regression_heads_equal_their_convex_fits(noisy_images, tiny_image_params):
    X, _ = noisy_images
    rng = np.random.default_rng(0)
    Y = rng.integers(0, 2, size=(len(X), 2))
    clf = PretrainedImageClassifier(**tiny_image_params).fit(X, Y)
    Z = _standardised(clf, X)
    assert clf.C_ == pytest.approx(2 / np.mean(np.sum(Z.astype(np.float64) ** 2, axis=1)), rel=1e-4)  # 2 per label
    for label in range(2):
        reference = LogisticRegression(C=clf.C_).fit(Z, Y[:, label])
        np.testing.assert_allclose(clf.predict_proba(X)[:, label], reference.predict_proba(Z)[:, 1], atol=5e-4)
    target = rng.normal(5.0, 2.0, size=len(X))
    reg = PretrainedImageRegressor(**tiny_image_params, C=0.5).fit(X, target)
    Z = _standardised(reg, X)
    standardised = (target - reg.y_mean_[0]) / reg.y_scale_[0]
    expected = Ridge(alpha=2.0).fit(Z, standardised).predict(Z) * reg.y_scale_[0] + reg.y_mean_[0]
    np.testing.assert_allclose(reg.predict(X), expected, rtol=1e-4, atol=1e-4)


def test_the_converged_head_is_deterministic_and_beats_few_epochs_of_sgd(text_data, tiny_text_params):
    X, y = text_data
    first = PretrainedTextClassifier(**tiny_text_params, freeze_layers="all").fit(X, y)
    again = PretrainedTextClassifier(**{**tiny_text_params, "random_state": 7}, freeze_layers="all").fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))  # no randomness left
    epochs = PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 2}, C=None).fit(X, y)
    assert epochs.C_ is None and epochs.n_epochs_ == 2
    assert first.history_[0, "train_loss"] < epochs.history_[-1, "train_loss"]


def test_mini_batch_training_stays_where_the_problem_is_not_a_plain_linear_fit(noisy_images, tiny_image_params):
    X, y = noisy_images
    for params in ({"head_hidden": (8,)}, {"label_smoothing": 0.1}, {"freeze_layers": -1}, {"augment": "light"}):
        clf = PretrainedImageClassifier(**tiny_image_params, **params).fit(X, y)
        assert clf.C_ is None and clf.n_epochs_ == tiny_image_params["max_epochs"], params
    clf = PretrainedImageClassifier(**tiny_image_params)
    clf.partial_fit(X, y)
    assert clf.C_ is None  # partial_fit is one epoch of training, never a solve


def test_a_converged_head_saves_pickles_and_exports(noisy_images, tiny_image_params, tmp_path):
    X, y = noisy_images
    clf = PretrainedImageClassifier(**tiny_image_params, early_stopping=True, refit_full=True).fit(X, y)
    assert "valid_loss" in clf.validation_history_[0] and clf.best_epoch_ == 1
    expected = clf.predict_proba(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected, atol=1e-6)
    np.testing.assert_allclose(sktransfer.load(clf.save(tmp_path / "m")).predict_proba(X), expected, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    import torch

    path = clf.export_onnx(tmp_path / "m.onnx")
    pixels = torch.stack([clf._make_dataset(list(X))[i][0]["pixel_values"] for i in range(len(X))]).numpy()
    (proba,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": pixels})
    np.testing.assert_allclose(proba, expected, atol=1e-4)

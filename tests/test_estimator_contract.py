"""The scikit-learn estimator contract, for the image and the text classifier alike (scikit-learn's API checks
also for the embedders; the regressors' in test_regression_multilabel.py; misuse in test_misuse_*.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score
from sklearn.utils import estimator_checks

from conftest import SKLEARN_API_CHECKS
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
)

SKLEARN_CHECKS = [
    *SKLEARN_API_CHECKS,
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_valid_tag_types",
]
MODALITIES = ["image", "text"]


@pytest.fixture(scope="module")
def three_class_images():
    """24 images in three classes told apart by brightness."""
    rng = np.random.default_rng(1)
    levels = {"dark": (0, 60), "mid": (100, 150), "light": (200, 255)}
    X = np.concatenate([rng.integers(lo, hi, size=(8, 32, 32, 3), dtype=np.uint8) for lo, hi in levels.values()])
    return X, np.repeat(list(levels), 8)


THREE_CLASS_TEXTS = (
    ["good film", "great acting", "wonderful story", "excellent movie", "nice plot", "love it"] * 2,
    ["bad film", "awful acting", "boring story", "terrible movie", "poor plot", "hate it"] * 2,
    ["the film", "a movie", "the story", "an acting", "this plot", "that film"] * 2,
)


@pytest.fixture
def case(request, image_data, three_class_images, tiny_image_params, tiny_bert_dir):
    """(class, fast constructor params, two-class X, y, three-class X, y) of one modality."""
    if request.param == "image":
        # The frozen backbone's features are cached, so a high lr and more epochs cost little.
        params = {**tiny_image_params, "lr": 1e-2, "max_epochs": 10}
        return (PretrainedImageClassifier, params, *image_data, *three_class_images)
    params = {"backbone": tiny_bert_dir, "max_length": 16, "random_state": 0, "lr": 1e-2, "max_epochs": 20}
    pos, neg, neutral = THREE_CLASS_TEXTS
    X2, y2 = pos + neg, ["pos"] * 12 + ["neg"] * 12
    X3, y3 = pos + neg + neutral, ["pos"] * 12 + ["neg"] * 12 + ["neutral"] * 12
    return PretrainedTextClassifier, params, X2, np.asarray(y2), X3, np.asarray(y3)


modalities = pytest.mark.parametrize("case", MODALITIES, indirect=True)


def _take(X, indices):
    return X[indices] if isinstance(X, np.ndarray) else [X[i] for i in indices]


@pytest.mark.parametrize("check", SKLEARN_CHECKS)
@pytest.mark.parametrize("estimator_class", [PretrainedImageClassifier, PretrainedTextClassifier,
                                             PretrainedImageEmbedder, PretrainedTextEmbedder],
                         ids=lambda cls: cls.__name__)
def test_sklearn_estimator_checks(estimator_class, check):
    getattr(estimator_checks, check)(estimator_class.__name__, estimator_class())


def test_tags_are_honest():
    image_tags = PretrainedImageClassifier().__sklearn_tags__()
    text_tags = PretrainedTextClassifier().__sklearn_tags__()
    assert not image_tags.input_tags.two_d_array and not image_tags.input_tags.string
    assert not text_tags.input_tags.two_d_array and text_tags.input_tags.string
    assert image_tags.estimator_type == text_tags.estimator_type == "classifier"


@modalities
@pytest.mark.parametrize("labels", [("neg", "pos"), (3, 7)], ids=["str", "int"])
def test_labels_round_trip_through_classes(case, labels):
    cls, params, X, y, *_ = case
    mapping = dict(zip(sorted(set(y)), labels))
    y_mapped = np.asarray([mapping[v] for v in y])
    clf = cls(**params).fit(X, y_mapped)
    assert clf.classes_.tolist() == sorted(labels)
    assert clf.classes_.dtype == y_mapped.dtype
    pred = clf.predict(X)
    assert pred.dtype == y_mapped.dtype
    assert set(pred.tolist()) <= set(labels)
    assert clf.score(X, y_mapped) >= 0.9


@modalities
def test_predict_proba_columns_follow_classes(case):
    cls, params, X, y, *_ = case
    # Labels given in reverse alphabetical order: classes_ is sorted, and proba follows classes_.
    clf = cls(**params).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    true_column = np.searchsorted(clf.classes_, y)
    assert (proba[np.arange(len(y)), true_column] > 0.5).mean() >= 0.9


@modalities
def test_fit_returns_self_and_changes_neither_params_nor_input(case):
    cls, params, X, y, *_ = case
    clf = cls(**params)
    before = clf.get_params(deep=False)
    X_copy, y_copy = (X.copy() if isinstance(X, np.ndarray) else list(X)), y.copy()
    assert clf.fit(X, y) is clf
    after = clf.get_params(deep=False)
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] or after[k] == before[k] for k in before)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)
    # A list of per-image arrays is not modified either.
    if isinstance(X, np.ndarray):
        images = [image.copy() for image in _take(X, [0, 1, -2, -1])]
        cls(**{**params, "max_epochs": 1}).fit(images, y[[0, 1, -2, -1]])
        np.testing.assert_array_equal(np.stack(images), _take(X, [0, 1, -2, -1]))


@modalities
@pytest.mark.parametrize("freeze_layers", ["all", "none"])
def test_fit_is_deterministic_with_random_state(case, freeze_layers):
    cls, params, X, y, *_ = case
    # Three fits that train the backbone: keep them tiny (a few samples, one epoch).
    X, y = _take(X, [0, 1, 2, -3, -2, -1]), y[[0, 1, 2, -3, -2, -1]]
    params = {**params, "freeze_layers": freeze_layers, "max_epochs": 1, "batch_size": 4, "device": "cpu"}
    clf = cls(**params)
    first = clf.fit(X, y).predict_proba(X)
    second = clf.fit(X, y).predict_proba(X)
    third = cls(**params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, third)


@modalities
def test_refit_forgets_previous_classes(case):
    cls, params, X, y, X3, y3 = case
    clf = cls(**{**params, "max_epochs": 2}).fit(X3, y3)
    assert len(clf.classes_) == 3
    y_new = np.where(y == y[0], "alpha", "beta")
    clf.fit(X, y_new)
    assert clf.classes_.tolist() == ["alpha", "beta"]
    assert clf.predict_proba(X).shape == (len(X), 2)
    assert set(clf.predict(X).tolist()) <= {"alpha", "beta"}


@modalities
def test_pickled_and_cloned_estimators_behave_the_same(case):
    cls, params, X, y, *_ = case
    clf = cls(**params).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    unfitted = cls(**params)
    cloned = clone(unfitted)
    assert cloned is not unfitted
    assert cloned.get_params() == unfitted.get_params()
    np.testing.assert_array_equal(cloned.fit(X, y).predict_proba(X), clf.predict_proba(X))


@modalities
def test_multiclass(case):
    cls, params, _, _, X3, y3 = case
    clf = cls(**params).fit(X3, y3)
    assert clf.classes_.tolist() == sorted(set(y3.tolist()))
    proba = clf.predict_proba(X3)
    assert proba.shape == (len(X3), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert clf.score(X3, y3) >= 0.8


@modalities
def test_score_is_accuracy(case):
    cls, params, X, y, *_ = case
    clf = cls(**{**params, "max_epochs": 1, "lr": 1e-4}).fit(X, y)
    pred = clf.predict(X)
    assert clf.score(X, y) == pytest.approx(accuracy_score(y, pred))
    weights = np.linspace(0.5, 2.0, len(y))
    assert clf.score(X, y, sample_weight=weights) == pytest.approx(accuracy_score(y, pred, sample_weight=weights))

"""Targets beyond single-label classification: regression (one or several outputs) and multi-label."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.utils import estimator_checks

from conftest import SKLEARN_API_CHECKS
from sktransfer import PretrainedImageClassifier, PretrainedImageRegressor, PretrainedTextRegressor

SKLEARN_CHECKS = SKLEARN_API_CHECKS
# The frozen backbone's features are cached, so many epochs at a high rate cost little.
FAST = {"lr": 3e-2, "max_epochs": 40}


@pytest.fixture(scope="module")
def graded_images():
    """40 images of graded brightness and redness; targets and labels derive from both."""
    rng = np.random.default_rng(0)
    brightness = rng.uniform(0, 1, 40)
    redness = rng.uniform(0, 1, 40)
    X = rng.integers(0, 40, size=(40, 32, 32, 3)).astype(np.float64)
    X += 180 * brightness[:, None, None, None]
    X[..., 0] += 35 * redness[:, None, None]
    return np.clip(X, 0, 255).astype(np.uint8), brightness, redness


@pytest.mark.parametrize("check", SKLEARN_CHECKS)
@pytest.mark.parametrize("estimator_class", [PretrainedImageRegressor, PretrainedTextRegressor], ids=["image", "text"])
def test_sklearn_estimator_checks(estimator_class, check):
    getattr(estimator_checks, check)(estimator_class.__name__, estimator_class())


def test_image_regressor_learns_brightness(graded_images, tiny_image_params):
    X, brightness, _ = graded_images
    reg = PretrainedImageRegressor(**{**tiny_image_params, **FAST}).fit(X, brightness)
    pred = reg.predict(X)
    assert pred.shape == (40,)
    assert r2_score(brightness, pred) > 0.5  # a constant model scores 0
    assert reg.score(X, brightness) == pytest.approx(r2_score(brightness, pred))


def test_image_regressor_multi_output(graded_images, tiny_image_params):
    X, brightness, redness = graded_images
    y = np.column_stack([100 * brightness, 5 - 3 * brightness])
    reg = PretrainedImageRegressor(**{**tiny_image_params, **FAST}).fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == (40, 2)
    # Targets are standardised inside and restored: each column comes back on its own scale.
    assert r2_score(y, pred, multioutput="raw_values").min() > 0.5
    assert abs(pred[:, 0].mean() - y[:, 0].mean()) < 10


def test_text_regressor_learns_positive_words(tiny_bert_dir):
    rng = np.random.default_rng(0)
    positive, filler = ["good", "great", "love", "wonderful"], ["the", "film", "plot", "story", "a", "movie"]
    counts = rng.integers(0, 4, 48)
    X = [" ".join(rng.permutation(list(rng.choice(positive, c)) + list(rng.choice(filler, 4 - c)))) for c in counts]
    reg = PretrainedTextRegressor(backbone=tiny_bert_dir, max_length=16, random_state=0, **FAST).fit(X, counts)
    pred = reg.predict(X)
    assert pred.shape == (48,)
    assert r2_score(counts, pred) > 0.5


def test_regressor_rejects_non_numeric_targets(graded_images, tiny_image_params):
    X, _, _ = graded_images
    with pytest.raises(ValueError, match="numeric targets"):
        PretrainedImageRegressor(**tiny_image_params).fit(X[:4], ["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def multilabel_fit(graded_images):
    X, brightness, redness = graded_images
    Y = np.column_stack([brightness > 0.5, redness > 0.5, brightness < 0.25]).astype(int)
    params = {"backbone": "test_efficientnet", "pretrained": False, "random_state": 0, **FAST}
    return PretrainedImageClassifier(**params).fit(X, Y), X, Y


def test_multilabel_indicator_targets(multilabel_fit):
    clf, X, Y = multilabel_fit
    assert clf.multilabel_ and clf.classes_.tolist() == [0, 1, 2]
    proba = clf.predict_proba(X)
    assert proba.shape == (40, 3)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1)  # one sigmoid per label, not a softmax
    pred = clf.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    assert (pred[:, 0] == Y[:, 0]).mean() > 0.8  # the brightness label is learnt


def test_threshold_changes_predictions(multilabel_fit):
    clf, X, _ = multilabel_fit
    proba = clf.predict_proba(X)
    low, high = np.quantile(proba, 0.25), np.quantile(proba, 0.75)
    n_low = clf.set_params(threshold=low).predict(X).sum()
    n_high = clf.set_params(threshold=high).predict(X).sum()
    clf.set_params(threshold=0.5)
    assert n_low == (proba >= low).sum() and n_high == (proba >= high).sum()
    assert n_low > n_high


def test_multilabel_binarizer_recipe(multilabel_fit):
    clf, X, Y = multilabel_fit
    names = np.array(["bright", "red", "dark"])
    label_lists = [list(names[row.astype(bool)]) for row in Y]
    mlb = MultiLabelBinarizer(classes=names)
    Y_encoded = mlb.fit_transform(label_lists)
    np.testing.assert_array_equal(Y_encoded, Y)
    decoded = mlb.inverse_transform(clf.predict(X))
    assert len(decoded) == len(X) and all(set(labels) <= set(names) for labels in decoded)

"""Test-time augmentation (``tta``): the blend of the plain pass with the mean of the views, computed here from
views cut out of the image arrays by hand, on every prediction path; cache, persistence, search, bad input."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from sktransfer import TTA, PretrainedImageClassifier, PretrainedImageRegressor, PretrainedTextClassifier, load
from sktransfer._cache import feature_cache

# TTA(n_views=4, zoom=2) of a 32x32 image: the mirror, the centre 16x16 region, that region mirrored, the top left
# 16x16 region; each then preprocessed as any image.
VIEWS = [lambda X: X[:, :, ::-1], lambda X: X[:, 8:24, 8:24], lambda X: X[:, 8:24, 8:24][:, :, ::-1],
         lambda X: X[:, :16, :16]]
CONFIGS = {
    "frozen, cached embeddings": (PretrainedImageClassifier, {}),
    "fine-tuned, raw inputs": (PretrainedImageClassifier, {"freeze_layers": "none", "C": None, "max_epochs": 1}),
    "regressor": (PretrainedImageRegressor, {}),
    "compiled runtime": (PretrainedImageClassifier, {"runtime": "onnxruntime"}),
}


def _fit(cls, image_data, **params):
    X, y = image_data
    target = (y == "light").astype(float) if cls is PretrainedImageRegressor else y
    return cls(backbone="test_efficientnet", pretrained=False, random_state=0, **params).fit(X, target)


@pytest.fixture(scope="module")
def frozen_model(image_data):
    return _fit(PretrainedImageClassifier, image_data)


@pytest.fixture
def frozen(frozen_model):
    """The frozen default classifier, fitted once; its ``tta`` is reset after each test."""
    yield frozen_model
    frozen_model.set_params(tta=None)


def _outputs(model, X):
    return model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_tta_blends_the_plain_pass_with_the_mean_of_the_views(image_data, config):
    cls, params = CONFIGS[config]
    if "runtime" in params:
        pytest.importorskip("onnxruntime")
    model = _fit(cls, image_data, **params)
    X = image_data[0]
    plain = _outputs(model, X)
    views = [_outputs(model, np.ascontiguousarray(view(X))) for view in VIEWS]
    model.set_params(tta=TTA(n_views=4, beta=0.3, zoom=2))
    blended = _outputs(model, X)
    np.testing.assert_allclose(blended, 0.3 * plain + 0.7 * np.mean(views, axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(blended, plain, rtol=0, atol=1e-6)  # the views do change the outputs
    model.set_params(tta=None)
    np.testing.assert_array_equal(_outputs(model, X), plain)


def test_tta_set_before_fit_equals_tta_set_after_and_leaves_transform_alone(image_data, frozen):
    X, y = image_data
    clf = _fit(PretrainedImageClassifier, image_data, tta=3)
    proba = clf.predict_proba(X)
    assert clf.score(X, y) == np.mean(clf.predict(X) == y)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_array_equal(clf.transform(X), frozen.transform(X))  # embeddings are the plain pass's
    np.testing.assert_array_equal(proba, frozen.set_params(tta=3).predict_proba(X))


def test_each_view_is_cached_under_its_own_key_and_the_cache_changes_no_result(image_data):
    X = image_data[0]
    feature_cache.clear()
    cached = _fit(PretrainedImageClassifier, image_data, tta=TTA(n_views=2, zoom=2))
    assert len(feature_cache) == len(X)  # fit embedded the plain images
    proba = cached.predict_proba(X)
    assert len(feature_cache) == 3 * len(X)  # and predict each view of them once
    np.testing.assert_array_equal(cached.predict_proba(X), proba)
    assert len(feature_cache) == 3 * len(X)
    uncached = _fit(PretrainedImageClassifier, image_data, tta=TTA(n_views=2, zoom=2), cache=False)
    np.testing.assert_array_equal(uncached.predict_proba(X), proba)


def test_pickle_and_save_load_keep_tta(image_data, tmp_path):
    X = image_data[0]
    clf = _fit(PretrainedImageClassifier, image_data, tta=TTA(n_views=2, beta=0.5, flip=False))
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba)
    loaded = load(clf.save(tmp_path / "model"))
    assert isinstance(loaded.tta, TTA) and loaded.tta.get_params() == clf.tta.get_params()
    np.testing.assert_allclose(loaded.predict_proba(X), proba, rtol=1e-6, atol=1e-7)


def test_grid_search_tunes_tta_and_its_nested_parameters(image_data):
    X, y = image_data
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, tta=TTA(n_views=1))
    search = GridSearchCV(clf, {"tta__beta": [0.0, 0.5]}, cv=2, scoring="neg_log_loss")
    search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and len(set(scores.round(10))) > 1
    assert search.best_estimator_.tta.get_params()["beta"] == search.best_params_["tta__beta"]


@pytest.mark.parametrize("tta, match", [
    (0, "tta"),
    (TTA(n_views=0), "n_views"),
    (TTA(beta=1.5), "beta"),
    (TTA(beta=-0.1), "beta"),
    (TTA(zoom=0.5), "zoom"),
    (TTA(n_views=6, flip=False), "lower n_views"),
    (TTA(n_views=2, zoom=1), "lower n_views"),
    ("flip", "tta"),
])
def test_bad_tta_is_refused_at_fit_and_at_prediction(image_data, frozen, tta, match):
    X, y = image_data
    with pytest.raises((ValueError, TypeError), match=match):
        PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, tta=tta).fit(X, y)
    with pytest.raises((ValueError, TypeError), match=match):
        frozen.set_params(tta=tta).predict(X)


def test_beta_one_warns_that_tta_has_no_effect(image_data, frozen):
    X = image_data[0]
    with pytest.warns(UserWarning, match=r"tta=TTA\(beta=1\) has no effect: .*beta=1"):
        clf = _fit(PretrainedImageClassifier, image_data, tta=TTA(beta=1))
    np.testing.assert_allclose(clf.predict_proba(X), frozen.predict_proba(X), rtol=0, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any other tta changes the predictions and does not warn
        _fit(PretrainedImageClassifier, image_data, tta=TTA(beta=0.9))


def test_text_estimators_have_no_tta():
    assert "tta" not in PretrainedTextClassifier().get_params()

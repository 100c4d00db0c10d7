"""The estimators inside scikit-learn's model selection tools: grid search, cross-validation, pipelines."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier


def _lowercase(texts):
    return [text.lower() for text in texts]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_freeze_layers_and_lr(image_data, tiny_image_params, n_jobs):
    X, y = image_data
    X, y = X[[0, 1, 2, 3, -4, -3, -2, -1]], y[[0, 1, 2, 3, -4, -3, -2, -1]]
    search = GridSearchCV(
        PretrainedImageClassifier(**{**tiny_image_params, "max_epochs": 1}),
        {"freeze_layers": ["all", -1], "lr": [1e-3, 1e-2]},
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        n_jobs=n_jobs,
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["freeze_layers"] in ("all", -1)
    assert search.best_estimator_.get_params()["lr"] == search.best_params_["lr"]
    assert set(search.predict(X).tolist()) <= {"dark", "light"}


def test_cross_val_score(text_data, tiny_text_params):
    X, y = text_data
    scores = cross_val_score(PretrainedTextClassifier(**tiny_text_params), X, y, cv=2)
    assert scores.shape == (2,)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_pipeline_with_a_text_preprocessing_step(text_data, tiny_text_params):
    X, y = text_data
    pipe = make_pipeline(
        FunctionTransformer(_lowercase),
        PretrainedTextClassifier(**{**tiny_text_params, "lr": 1e-2, "max_epochs": 20}),
    )
    pipe.fit([text.upper() for text in X], y)
    assert pipe.score([text.upper() for text in X], y) >= 0.9
    assert pipe.classes_.tolist() == ["neg", "pos"]
    assert pipe.predict_proba(X).shape == (len(X), 2)


def test_clone_of_fitted_estimator_is_unfitted_with_same_params(text_data, tiny_text_params):
    X, y = text_data
    fitted = PretrainedTextClassifier(**tiny_text_params).fit(X, y)
    cloned = clone(fitted)
    assert cloned.get_params() == fitted.get_params()
    assert not hasattr(cloned, "classes_") and not hasattr(cloned, "net_")
    with pytest.raises(NotFittedError):
        cloned.predict(X)
    np.testing.assert_array_equal(cloned.fit(X, y).predict_proba(X), fitted.predict_proba(X))


def test_pickle_round_trip_of_fitted_pipeline(text_data, tiny_text_params):
    X, y = text_data
    pipe = make_pipeline(FunctionTransformer(_lowercase), PretrainedTextClassifier(**tiny_text_params)).fit(X, y)
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_allclose(restored.predict_proba(X), pipe.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert restored.get_params(deep=False).keys() == pipe.get_params(deep=False).keys()

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
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(
        PretrainedImageClassifier(**{**tiny_image_params, "max_epochs": 1}),
        {"freeze_layers": ["all", -1], "lr": [1e-3, 1e-2]},
        cv=cv,
        n_jobs=n_jobs,
    )
    search.fit(X, y)
    # The scores are our estimator's: a clone with a candidate's parameters, fitted on the first split's training
    # part, scores the same on its test part (the search's fits ran on clones, in worker processes with n_jobs=2).
    train, test = next(cv.split(X, y))
    for params, score in zip(search.cv_results_["params"], search.cv_results_["split0_test_score"]):
        assert score == clone(search.estimator).set_params(**params).fit(X[train], y[train]).score(X[test], y[test])
    # Frozen features and the solved head tell dark from light; one epoch of fine-tuning does not yet.
    assert search.best_params_["freeze_layers"] == "all" and search.best_score_ == 1.0
    assert search.score(X, y) == 1.0


def test_cross_val_score(text_data, tiny_text_params):
    X, y = text_data
    scores = cross_val_score(PretrainedTextClassifier(**tiny_text_params), X, y, cv=2)
    # Each fold's test texts are the other fold's training texts (the toy set holds every text twice).
    np.testing.assert_array_equal(scores, [1.0, 1.0])


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

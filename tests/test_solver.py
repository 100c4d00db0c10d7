"""The converged linear-head solver: equal to scikit-learn's LogisticRegression / Ridge on the same features."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.special import expit, softmax
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from sktransfer._heads import Head
from sktransfer._solver import CV_FACTORS, MAX_ITER, TOL, UNSEEN_LOG_ODDS, fit_linear_head


@pytest.fixture(autouse=True)
def _single_threaded():
    """The references too: on a loaded CPU, BLAS threads make these small fits many times slower."""
    with threadpool_limits(limits=1):
        yield


ATOL = 1e-5  # on probabilities: the solution's float32 weights against the reference's float64 ones


class _Reference(LogisticRegression):
    """LogisticRegression at the solver's tolerance, in float64 (float32 input stays float32)."""

    def __init__(self, C: float = 1.0):
        super().__init__(C=C, tol=TOL, max_iter=MAX_ITER)

    def fit(self, X, y, sample_weight=None):
        return super().fit(np.asarray(X, dtype=np.float64), y, sample_weight=sample_weight)

    def predict_proba(self, X):
        return super().predict_proba(np.asarray(X, dtype=np.float64))


def _reference(C: float) -> LogisticRegression:
    return _Reference(C)


def _standardised(X: np.ndarray) -> np.ndarray:
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32)


def _data(n_classes: int, n: int = 300, seed: int = 0):
    X, y = make_classification(n, 20, n_informative=8, n_classes=n_classes, random_state=seed)
    return _standardised(X), y, np.random.default_rng(seed).uniform(0.0, 3.0, n)


def _proba(solution, X: np.ndarray) -> np.ndarray:
    return softmax(X.astype(np.float64) @ solution.weight.T + solution.bias, axis=1)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_head_equals_logistic_regression(n_classes, weighted):
    X, y, w = _data(n_classes)
    w = w if weighted else None
    solution = fit_linear_head(X, y, kind="multiclass", n_outputs=n_classes, sample_weight=w, C=0.3)
    reference = _reference(0.3).fit(X, y, sample_weight=w)
    assert solution.weight.shape == (n_classes, 20) and solution.bias.shape == (n_classes,)
    assert solution.weight.dtype == np.float32 and solution.C == 0.3
    assert solution.cv_scores is None and solution.cv_grid is None
    np.testing.assert_allclose(_proba(solution, X), reference.predict_proba(X), atol=ATOL)


def test_binary_rows_are_half_the_decision_function():
    X, y, w = _data(2)
    solution = fit_linear_head(X, y, kind="multiclass", n_outputs=2, sample_weight=w, C=2.0)
    reference = _reference(2.0).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(solution.weight[1], -solution.weight[0])
    np.testing.assert_allclose(solution.weight[1] - solution.weight[0], reference.coef_[0], atol=1e-3)
    logit_gap = X @ (solution.weight[1] - solution.weight[0]) + solution.bias[1] - solution.bias[0]
    np.testing.assert_allclose(logit_gap, reference.decision_function(X), atol=1e-3)


def test_penalty_changes_the_solution():
    X, y, _ = _data(3)
    strong = fit_linear_head(X, y, kind="multiclass", n_outputs=3, C=0.01)
    weak = fit_linear_head(X, y, kind="multiclass", n_outputs=3, C=10.0)
    assert np.linalg.norm(strong.weight) < 0.5 * np.linalg.norm(weak.weight)
    assert not np.allclose(_proba(strong, X), _reference(10.0).fit(X, y).predict_proba(X), atol=0.01)


def test_head_with_the_solution_predicts_as_logistic_regression_on_its_standardisation():
    raw, y = make_classification(200, 16, n_informative=6, n_classes=3, random_state=1)
    raw = (raw * np.linspace(0.1, 10, 16) + 5).astype(np.float32)
    head = Head(16, 3)
    head.fit_standardization(torch.as_tensor(raw))
    standardised = ((torch.as_tensor(raw) - head.mean) / head.scale).numpy()
    solution = fit_linear_head(standardised, y, kind="multiclass", n_outputs=3, C=1.0)
    with torch.no_grad():
        head.layers[-1].weight.copy_(torch.as_tensor(solution.weight))
        head.layers[-1].bias.copy_(torch.as_tensor(solution.bias))
        proba = torch.softmax(head(torch.as_tensor(raw)), dim=1).numpy()
    np.testing.assert_allclose(proba, _reference(1.0).fit(standardised, y).predict_proba(standardised), atol=ATOL)


def test_multilabel_is_one_logistic_regression_per_label():
    X, _, w = _data(2)
    Y = (X[:, :3] + 0.5 * np.random.default_rng(0).normal(size=(len(X), 3)) > 0).astype(np.float32)
    solution = fit_linear_head(X, Y, kind="multilabel", n_outputs=3, sample_weight=w, C=0.5)
    assert solution.weight.shape == (3, 20)
    for label in range(3):
        reference = _reference(0.5).fit(X, Y[:, label], sample_weight=w)
        proba = expit(X.astype(np.float64) @ solution.weight[label] + solution.bias[label])
        np.testing.assert_allclose(proba, reference.predict_proba(X)[:, 1], atol=ATOL)


@pytest.mark.parametrize("n_targets", [1, 3])
def test_regression_is_ridge_with_alpha_one_over_C(n_targets):
    X, Y = make_regression(200, 15, n_targets=n_targets, noise=5.0, random_state=0)
    X, Y = _standardised(X), _standardised(Y.reshape(200, -1)).squeeze()
    w = np.random.default_rng(0).uniform(0.0, 2.0, 200)
    solution = fit_linear_head(X, Y, kind="regression", n_outputs=n_targets, sample_weight=w, C=0.02)
    reference = Ridge(alpha=50.0).fit(X, Y, sample_weight=w)
    prediction = X.astype(np.float64) @ solution.weight.T + solution.bias
    assert solution.weight.shape == (n_targets, 15)
    np.testing.assert_allclose(prediction, reference.predict(X).reshape(200, -1), atol=1e-5)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_auto_is_C_n_classes_on_features_of_unit_mean_squared_norm(n_classes):
    X, y, w = _data(n_classes)
    norm = np.sqrt(np.mean(np.sum(X.astype(np.float64) ** 2, axis=1)))
    solution = fit_linear_head(X, y, kind="multiclass", n_outputs=n_classes, sample_weight=w)
    assert solution.C == pytest.approx(n_classes / norm**2) and solution.C == pytest.approx(n_classes / 20, rel=1e-3)
    reference = _reference(n_classes / norm**2).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(_proba(solution, X), reference.predict_proba(X), atol=ATOL)


def test_auto_counts_only_the_classes_with_a_weighted_sample():
    X, y, w = _data(3)
    w[y == 2] = 0.0
    two = fit_linear_head(X, y, kind="multiclass", n_outputs=3, sample_weight=w)
    norm2 = np.mean(np.sum(X[y != 2].astype(np.float64) ** 2, axis=1))
    assert two.C == pytest.approx(2 / norm2)


def test_auto_is_two_per_label_and_one_for_regression():
    X, y, _ = _data(2)
    norm2 = np.mean(np.sum(X.astype(np.float64) ** 2, axis=1))
    labels = fit_linear_head(X, np.stack([y, 1 - y], axis=1), kind="multilabel", n_outputs=2)
    assert labels.C == pytest.approx(2 / norm2)
    ridge = fit_linear_head(X, y.astype(float), kind="regression", n_outputs=1)
    assert ridge.C == pytest.approx(1 / norm2)


def test_regression_cv_picks_from_the_grid():
    X, Y = make_regression(200, 15, n_targets=2, noise=1.0, random_state=0)
    solution = fit_linear_head(_standardised(X), _standardised(Y), kind="regression", n_outputs=2, C="cv")
    np.testing.assert_allclose(solution.cv_grid, CV_FACTORS / 15, rtol=1e-3)
    assert solution.C in solution.cv_grid and solution.cv_scores.shape == CV_FACTORS.shape
    assert solution.C == solution.cv_grid[-1]  # nearly noiseless: the least penalty


def test_cv_prefers_a_strong_penalty_for_noise_and_a_weak_one_for_signal():
    rng = np.random.default_rng(0)
    X = _standardised(rng.normal(size=(400, 30)))
    noise = fit_linear_head(X, rng.integers(0, 2, 400), kind="multiclass", n_outputs=2, C="cv")
    signal = fit_linear_head(X, (X[:, 0] + 0.2 * X[:, 1] > 0).astype(int), kind="multiclass", n_outputs=2, C="cv")
    np.testing.assert_array_equal(noise.cv_grid, signal.cv_grid)
    assert noise.C == noise.cv_grid[0] and signal.C >= 100 * noise.C
    assert np.nanargmin(signal.cv_scores) == list(signal.cv_grid).index(signal.C)
    # The path walks up from the strongest penalty and stops two values past the best.
    assert np.isfinite(noise.cv_scores[:3]).all() and np.isnan(noise.cv_scores[3:]).all()


def test_results_are_deterministic():
    X, y, w = _data(3)
    for C in (1.0, "cv"):
        first = fit_linear_head(X, y, kind="multiclass", n_outputs=3, sample_weight=w, C=C, random_state=4)
        second = fit_linear_head(X, y, kind="multiclass", n_outputs=3, sample_weight=w, C=C, random_state=4)
        np.testing.assert_array_equal(first.weight, second.weight)
        np.testing.assert_array_equal(first.bias, second.bias)
        assert first.C == second.C
    np.testing.assert_array_equal(first.cv_scores, second.cv_scores)
    other = fit_linear_head(X, y, kind="multiclass", n_outputs=3, sample_weight=w, C="cv", random_state=5)
    assert not np.array_equal(first.cv_scores, other.cv_scores, equal_nan=True)


def test_cv_scores_are_the_weighted_validation_log_loss_of_stratified_folds():
    X, y, w = _data(3)
    solution = fit_linear_head(X, y, kind="multiclass", n_outputs=3, sample_weight=w, C="cv", random_state=2)
    C, losses = solution.cv_grid[0], []
    for train, valid in StratifiedKFold(5, shuffle=True, random_state=2).split(X, y):
        model = LogisticRegression(C=C, tol=TOL, max_iter=MAX_ITER)
        model.fit(X[train].astype(np.float64), y[train], sample_weight=w[train])
        losses.append(log_loss(y[valid], model.predict_proba(X[valid].astype(np.float64)), sample_weight=w[valid]))
    assert solution.cv_scores[0] == pytest.approx(np.mean(losses), rel=1e-6)


def test_zero_weight_samples_are_left_out():
    X, y, w = _data(3)
    w[:100] = 0.0
    solution = fit_linear_head(X, y, kind="multiclass", n_outputs=3, sample_weight=w)
    subset = fit_linear_head(X[100:], y[100:], kind="multiclass", n_outputs=3, sample_weight=w[100:])
    np.testing.assert_array_equal(solution.weight, subset.weight)


def test_a_class_without_weight_gets_negligible_probability():
    X, y, w = _data(3)
    w[y == 1] = 0.0
    solution = fit_linear_head(X, y, kind="multiclass", n_outputs=4, sample_weight=w, C=1.0)
    proba = _proba(solution, X)
    assert np.all(solution.weight[[1, 3]] == 0) and np.isfinite(solution.bias).all()
    assert proba[:, [1, 3]].max() < 1.1e-6
    reference = _reference(1.0).fit(X[y != 1], y[y != 1], sample_weight=w[y != 1])
    np.testing.assert_allclose(proba[:, [0, 2]], reference.predict_proba(X), atol=ATOL)


def test_a_single_present_class_and_constant_labels():
    X, y, _ = _data(2)
    only_one = fit_linear_head(X, y, kind="multiclass", n_outputs=2, sample_weight=(y == 1).astype(float))
    assert _proba(only_one, X)[:, 1].min() > 1 - 1e-5
    Y = np.stack([np.zeros(len(y)), np.ones(len(y)), y], axis=1)
    labels = fit_linear_head(X, Y, kind="multilabel", n_outputs=3, C="cv")
    np.testing.assert_allclose(labels.bias[:2], [UNSEEN_LOG_ODDS, -UNSEEN_LOG_ODDS], rtol=1e-6)
    assert np.all(labels.weight[:2] == 0) and np.any(labels.weight[2] != 0)
    auto = fit_linear_head(X, Y, kind="multilabel", n_outputs=3).C
    assert np.ndim(auto) == 0 and labels.C.shape == (3,) and labels.C[:2].tolist() == [auto, auto]
    assert labels.C[2] in labels.cv_grid
    assert np.isnan(labels.cv_scores[:2]).all() and np.isfinite(labels.cv_scores[2, 0])


def test_cv_falls_back_to_a_fixed_C_on_tiny_data():
    X, y, _ = _data(3, n=30)
    y[:] = np.r_[0, [1, 2] * 14, 1]  # class 0 once: no stratified 5-fold split
    solution = fit_linear_head(X, y, kind="multiclass", n_outputs=3, C="cv")
    assert solution.C == fit_linear_head(X, y, kind="multiclass", n_outputs=3).C
    assert solution.cv_scores is None and solution.cv_grid is None


def test_converges_without_warnings_on_separable_data():
    X, y, _ = _data(4)
    X = X + 3.0 * np.eye(4)[y] @ np.ones((4, 20)) * np.sign(X[:1])  # push the classes apart
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_linear_head(X, y, kind="multiclass", n_outputs=4, C=100.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "ranking"}, "kind must be"),
    ({"C": 0.0}, "C must be"),
    ({"C": "best"}, "C must be"),
    ({"sample_weight": np.zeros(300)}, "no positive entry"),
])
def test_bad_arguments(kwargs, message):
    X, y, _ = _data(2)
    with pytest.raises(ValueError, match=message):
        fit_linear_head(X, y, **{"kind": "multiclass", "n_outputs": 2, **kwargs})

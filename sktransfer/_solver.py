"""Full-batch, converged fits of a linear head on cached (frozen-backbone) embeddings.

With a frozen backbone and a linear head, training the head is a convex problem: L2-penalised
logistic (softmax or per-label sigmoid) regression, or ridge regression. Solving it to convergence
with scikit-learn's solvers, instead of a few epochs of mini-batch AdamW, gives the same head as
``LogisticRegression`` / ``Ridge`` on the same standardised features: deterministic, and as good as
the linear baseline a data scientist would compare with.

The penalty strength ``C`` has scikit-learn's meaning: the head minimises

    C * sum_i s_i * loss_i + penalty(W)       (the bias is never penalised)

with ``s_i`` the sample weights (class weights folded in) and, per task:

- ``"multiclass"`` with K >= 3 classes: ``loss`` is softmax cross-entropy, ``penalty = ||W||_F^2 / 2``,
  exactly ``LogisticRegression(C=C)`` (multinomial).
- ``"multiclass"`` with 2 classes: ``LogisticRegression(C=C)`` fits one vector ``w`` with penalty
  ``||w||^2 / 2``. The head's two softmax rows are ``-w/2`` and ``+w/2`` (with the bias split alike),
  so the logit difference is LogisticRegression's decision function and ``predict_proba`` is the
  same. In terms of the 2-row softmax ``W`` this is the penalty ``||W||_F^2``: twice the multinomial
  one, i.e. a 2-class softmax fit with ``C / 2``. (scikit-learn makes the same choice for binary y.)
- ``"multilabel"``: label ``l`` is ``LogisticRegression(C=C)`` on column ``l`` (one sigmoid each).
  Summed over labels this is the objective above with ``loss`` the per-label binary cross-entropies
  summed and ``penalty = ||W||_F^2 / 2``.
- ``"regression"``: ``loss`` is the Gaussian negative log-likelihood ``r^2 / 2`` per target, summed
  over targets, and ``penalty = ||W||_F^2 / 2``, i.e. ``Ridge(alpha=1 / C)``; ``C=1`` is ``Ridge()``.

Samples of weight 0 do not enter the objective and are dropped. A class (or a label's value) with
no weighted sample has no finite optimum (its log-odds go to minus infinity): it gets zero weights
and log-odds ``log(1e-6)`` relative to the rest (see :func:`fit_linear_head`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

C_GRID = np.logspace(-4, 2, 13)  # half-decade steps; searched with C="cv"
N_FOLDS = 5
FALLBACK_C = 1.0  # with C="cv" where the data are too small to cross-validate
MAX_ITER = 2000
TOL = 1e-5  # L-BFGS tolerance on the gradient of the sample-weighted *mean* loss
UNSEEN_LOG_ODDS = float(np.log(1e-6))
KINDS = ("multiclass", "multilabel", "regression")


@dataclass(frozen=True)
class LinearSolution:
    """The fitted final layer of a :class:`~sktransfer._heads.Head`.

    Attributes
    ----------
    weight : ndarray of shape (n_outputs, n_features), float32
        For ``nn.Linear.weight``.
    bias : ndarray of shape (n_outputs,), float32
        For ``nn.Linear.bias``.
    C : float or ndarray of shape (n_outputs,)
        The penalty used; per label for ``"multilabel"`` with ``C="cv"``.
    cv_scores : ndarray of shape (len(C_GRID),) or (n_outputs, len(C_GRID)), or None
        With ``C="cv"``: the mean validation score per grid value (weighted log-loss for
        classification, leave-one-out squared error for regression; lower is better). None with a
        fixed ``C``, or where the data were too small to cross-validate.
    """

    weight: np.ndarray
    bias: np.ndarray
    C: float | np.ndarray
    cv_scores: np.ndarray | None = None


def fit_linear_head(features: np.ndarray, y: np.ndarray, *, kind: str, n_outputs: int,
                    sample_weight: np.ndarray | None = None, C: float | str = 1.0,
                    random_state: int = 0) -> LinearSolution:
    """Fit the final linear layer of a head to convergence on (standardised) embeddings.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
        The embeddings, already standardised as the head does (its ``mean`` and ``scale``).
    y : ndarray
        ``"multiclass"``: int codes in ``[0, n_outputs)`` of shape (n_samples,); codes with no
        (weighted) sample are allowed. ``"multilabel"``: 0/1 of shape (n_samples, n_outputs).
        ``"regression"``: targets (standardised) of shape (n_samples,) or (n_samples, n_outputs).
    kind : {"multiclass", "multilabel", "regression"}
    n_outputs : int
        Output units of the head: classes, labels or targets.
    sample_weight : ndarray of shape (n_samples,), default=None
        Non-negative weights, class weights already folded in; not rescaled (as in scikit-learn,
        multiplying them all by a factor weakens the penalty by that factor).
    C : float or "cv", default=1.0
        Inverse penalty strength (see the module docstring), or "cv" to pick it from ``C_GRID`` by a
        stratified ``N_FOLDS``-fold cross-validation of the weighted log-loss (per label for
        ``"multilabel"``; shuffled with ``random_state``), or for regression by the efficient
        leave-one-out error of ``RidgeCV`` (one ``C`` shared by all targets). Where some class (or a
        label's rarer value) has fewer than ``N_FOLDS`` weighted samples, ``C=1.0`` is used instead.
    random_state : int, default=0
        Seed of the cross-validation folds; the fit itself is deterministic.

    Returns
    -------
    LinearSolution

    Raises
    ------
    ValueError
        For an unknown ``kind``, a non-positive ``C``, or sample weights with no positive entry.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if not (C == "cv" or (isinstance(C, (int, float)) and C > 0)):
        raise ValueError(f"C must be a positive number or 'cv', got {C!r}.")
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(y)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if not (w > 0).any():
        raise ValueError("sample_weight has no positive entry: there is nothing to fit.")
    keep = w > 0
    X, y, w = X[keep], y[keep], w[keep]
    if kind == "regression":
        weight, bias, C, scores = _fit_ridge(X, y.reshape(len(y), -1), w, C)
    elif kind == "multilabel":
        fits = [_fit_binary(X, y[:, label].astype(np.int64), w, C, random_state) for label in range(n_outputs)]
        weight = np.stack([fit[0] for fit in fits])
        bias = np.array([fit[1] for fit in fits])
        C = np.array([fit[2] for fit in fits]) if C == "cv" else C
        scores = np.stack([fit[3] for fit in fits]) if all(fit[3] is not None for fit in fits) else None
    else:
        weight, bias, C, scores = _fit_softmax(X, y.astype(np.int64), w, n_outputs, C, random_state)
    return LinearSolution(weight.astype(np.float32), bias.astype(np.float32), C, scores)


def _logistic(C: float, warm_start: bool = False) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=MAX_ITER, tol=TOL, warm_start=warm_start)


def _fit_logistic(X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float | str, seed: int):
    """``LogisticRegression`` with ``C``, or with the cross-validated one; returns (model, C, scores)."""
    scores = None
    if C == "cv":
        C, scores = _cross_validate(X, y, w, seed)
    return _logistic(C).fit(X, y, sample_weight=w), C, scores


def _cross_validate(X: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int) -> tuple[float, np.ndarray | None]:
    """The ``C_GRID`` value of least mean weighted validation log-loss, and the scores per value."""
    labels, counts = np.unique(y, return_counts=True)
    if counts.min() < N_FOLDS:
        return FALLBACK_C, None
    scores = np.zeros(len(C_GRID))
    for train, valid in StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(X, y):
        model = _logistic(C_GRID[0], warm_start=True)
        for i, C in enumerate(C_GRID):  # a path: each fit starts from the previous solution
            model.set_params(C=C).fit(X[train], y[train], sample_weight=w[train])
            scores[i] += log_loss(y[valid], model.predict_proba(X[valid]), sample_weight=w[valid], labels=labels)
    return float(C_GRID[np.argmin(scores)]), scores / N_FOLDS


def _fit_softmax(X, codes, w, n_outputs: int, C, seed: int):
    present = np.unique(codes)
    weight, bias = np.zeros((n_outputs, X.shape[1])), np.zeros(n_outputs)
    scores = None
    if len(present) > 1:
        model, C, scores = _fit_logistic(X, codes, w, C, seed)
        coef, intercept = model.coef_, model.intercept_
        if len(present) == 2:  # one decision function d(x): rows -d/2 and +d/2 give the same softmax
            coef, intercept = np.vstack([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        weight[present], bias[present] = coef, intercept
    elif C == "cv":
        C = FALLBACK_C
    absent = np.setdiff1d(np.arange(n_outputs), present)
    if absent.size:
        # No finite optimum: at most about 1e-6 probability on every training sample.
        lse = logsumexp(X @ weight[present].T + bias[present], axis=1)
        bias[absent] = lse.min() + UNSEEN_LOG_ODDS
    return weight, bias, C, scores


def _fit_binary(X, y, w, C, seed: int):
    """One label's sigmoid: (weight row, bias, C, cv scores)."""
    values = np.unique(y)
    if len(values) < 2:  # never (or always) positive: no finite optimum
        return np.zeros(X.shape[1]), UNSEEN_LOG_ODDS * (1 if values[0] == 0 else -1), FALLBACK_C if C == "cv" else C, None
    model, C, scores = _fit_logistic(X, y, w, C, seed)
    return model.coef_[0], float(model.intercept_[0]), C, scores


def _fit_ridge(X, Y, w, C):
    scores = None
    if C == "cv":
        model = RidgeCV(alphas=1.0 / C_GRID, store_cv_results=True).fit(X, Y, sample_weight=w)
        C, scores = float(1.0 / model.alpha_), model.cv_results_.reshape(len(X), -1, len(C_GRID)).mean(axis=(0, 1))
    else:
        model = Ridge(alpha=1.0 / C).fit(X, Y, sample_weight=w)
    return model.coef_.reshape(Y.shape[1], -1), np.reshape(model.intercept_, -1), C, scores

"""Full-batch, converged fits of a linear head on cached (frozen-backbone) embeddings.

With a frozen backbone and a linear head, training the head is a convex problem: L2-penalised
logistic (softmax, or one sigmoid per label) regression, or ridge regression. Solving it to
convergence with scikit-learn's solvers instead of a few epochs of mini-batch AdamW gives the head
that ``LogisticRegression`` / ``Ridge`` fit on the same standardised features, deterministically.
L-BFGS stops at ``LogisticRegression``'s own tolerance (``tol=1e-4``), so the head is the fit that
``LogisticRegression(C=C)`` makes. A tighter 1e-6 took 3x the iterations on Office-31's embeddings
(31 classes, 1,280 features: 159 against 54, 2.8 against 1.0 s) and moved no probability by more than 0.01.

The penalty strength ``C`` has scikit-learn's meaning: the head minimises

    C * sum_i s_i * loss_i + penalty(W)       (the bias is never penalised)

with ``s_i`` the sample weights (class weights folded in) and, per task:

- ``"multiclass"``, K >= 3 classes: ``loss`` is the softmax cross-entropy and
  ``penalty = ||W||_F^2 / 2``: exactly ``LogisticRegression(C=C)`` (multinomial).
- ``"multiclass"``, 2 classes: ``LogisticRegression(C=C)`` fits one vector ``w`` with penalty
  ``||w||^2 / 2``. The head's two softmax rows are ``-w/2`` and ``+w/2`` (the bias split alike), so
  the logit difference is LogisticRegression's decision function and ``predict_proba`` is the same.
  For the 2-row ``W`` this penalty is ``||W||_F^2``, twice the multinomial one: a 2-class softmax fit
  with ``C / 2``. (scikit-learn treats binary ``y`` the same way.)
- ``"multilabel"``: label ``l`` is ``LogisticRegression(C=C)`` on column ``l``; summed over labels,
  ``loss`` is the sum of the per-label binary cross-entropies and ``penalty = ||W||_F^2 / 2``.
- ``"regression"``: ``loss`` is the unit-variance Gaussian negative log-likelihood ``r^2 / 2``
  summed over targets and ``penalty = ||W||_F^2 / 2``: ``Ridge(alpha=1 / C)`` (so ``C=1`` is ``Ridge()``).

``C="auto"`` is ``n_classes / mean_i ||x_i||^2`` (``n_classes`` counts the classes with a weighted
sample; 2 for each label of ``"multilabel"``; 1 for ``"regression"``). ``1 / mean_i ||x_i||^2``, about
``1 / n_features`` for standardised features, is ``C=1`` on features rescaled to unit mean squared norm
(as sentence embeddings are): a penalty that does not grow with the number of features, as
``gamma="scale"`` does for ``SVC``. The factor ``n_classes`` weakens it as the classes multiply: each
class's weights are informed by its own share of the samples, about ``n / n_classes`` of them. Measured
on frozen embeddings (``benchmarks/results/accuracy.md``), ``1 / mean_i ||x_i||^2`` alone regularised
31 classes 2 points below ``LogisticRegression()``, and two classes slightly too strongly as well.

Samples of weight 0 do not enter the objective and are dropped. A class (or one value of a label)
with no weighted sample has no finite optimum (its log-odds go to minus infinity): it gets zero
weights and log-odds ``UNSEEN_LOG_ODDS`` below the rest.

The solvers run single-threaded: each L-BFGS iteration is one pass of small matrix products, where
BLAS/OpenMP threads gain nothing (two threads took 2.3x as long on Office-31's embeddings, on an idle
2-core CPU) and, on a loaded CPU, cost up to 10-60x (threads waiting on each other).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

CV_FACTORS = np.logspace(-2, 3, 11)  # C="cv" searches C="auto" times these, in half-decades
N_FOLDS = 5
PATIENCE = 2  # the C path stops after this many grid values worse than the best
MAX_ITER = 5000
TOL = 1e-4  # LogisticRegression's default: the head is the fit that LogisticRegression(C=C) makes
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
        The penalty used; an array (one per label) for ``"multilabel"``.
    cv_grid : ndarray of shape (len(CV_FACTORS),) or None
        With ``C="cv"``: the values of ``C`` searched, in order.
    cv_scores : ndarray of shape (len(CV_FACTORS),) or (n_outputs, len(CV_FACTORS)), or None
        With ``C="cv"``: the mean validation loss for each value of ``cv_grid`` (weighted log-loss,
        or leave-one-out squared error for regression; per label for ``"multilabel"``), NaN past
        the point where the path stopped or for a label not cross-validated. None where nothing
        was cross-validated (fixed ``C``, or data too small).
    """

    weight: np.ndarray
    bias: np.ndarray
    C: float | np.ndarray
    cv_grid: np.ndarray | None = None
    cv_scores: np.ndarray | None = None


def fit_linear_head(features: np.ndarray, y: np.ndarray, *, kind: str, n_outputs: int,
                    sample_weight: np.ndarray | None = None, C: float | str = "auto",
                    random_state: int = 0) -> LinearSolution:
    """Fit the final linear layer of a head to convergence on (standardised) embeddings.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
        The embeddings, already standardised as the head does (its ``mean`` and ``scale``).
    y : ndarray
        ``"multiclass"``: int codes in ``[0, n_outputs)``, shape (n_samples,); codes without a
        (weighted) sample are allowed. ``"multilabel"``: 0/1 of shape (n_samples, n_outputs).
        ``"regression"``: (standardised) targets of shape (n_samples,) or (n_samples, n_outputs).
    kind : {"multiclass", "multilabel", "regression"}
    n_outputs : int
        Output units of the head: classes, labels or targets.
    sample_weight : ndarray of shape (n_samples,), default=None
        Non-negative weights, class weights folded in. Not rescaled: as in scikit-learn, multiplying
        them all by a factor weakens the penalty by that factor.
    C : float, "auto" or "cv", default="auto"
        Inverse penalty strength (see the module docstring). "cv" picks it from ``C="auto"`` times
        ``CV_FACTORS`` by the weighted validation log-loss of a stratified ``N_FOLDS``-fold
        cross-validation (per label for ``"multilabel"``; folds shuffled with ``random_state``),
        walking up from the strongest penalty and stopping ``PATIENCE`` values past the best; for
        regression by ``RidgeCV``'s efficient leave-one-out error (one ``C`` for all targets).
        Where a class (or a label's rarer value) has fewer than ``N_FOLDS`` samples, "auto" is used.
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
    if not (C in ("auto", "cv") or (isinstance(C, (int, float)) and not isinstance(C, bool) and C > 0)):
        raise ValueError(f"C must be a positive number, 'auto' or 'cv', got {C!r}.")
    w = np.ones(len(features)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if not (w > 0).any():
        raise ValueError("sample_weight has no positive entry: there is nothing to fit.")
    keep = w > 0
    X, y, w = np.asarray(features, dtype=np.float64)[keep], np.asarray(y)[keep], w[keep]
    auto = _auto_C(X, y, kind)
    grid = auto * CV_FACTORS
    searched, C = C == "cv", auto if C == "auto" else C
    with threadpool_limits(limits=1):  # see the module docstring
        weight, bias, chosen, scores = _fit(X, y, w, kind, n_outputs, C, grid, auto, random_state)
    C = chosen if searched else C  # a fixed C stays one number, also for several labels
    cv_grid = grid if searched and scores is not None else None
    return LinearSolution(weight.astype(np.float32), bias.astype(np.float32), C, cv_grid, scores)


def _auto_C(X: np.ndarray, y: np.ndarray, kind: str) -> float:
    """``n_classes / mean ||x||^2`` (see the module docstring)."""
    n_classes = {"multiclass": max(len(np.unique(y)), 2), "multilabel": 2, "regression": 1}[kind]
    return float(n_classes / max(np.mean(np.einsum("ij,ij->i", X, X)), 1e-12))


def _fit(X, y, w, kind: str, n_outputs: int, C, grid, auto: float, seed: int):
    if kind == "regression":
        return _fit_ridge(X, y.reshape(len(y), -1), w, C, grid)
    if kind == "multilabel":
        fits = [_fit_binary(X, y[:, label].astype(np.int64), w, C, grid, auto, seed) for label in range(n_outputs)]
        weight, bias, C = (np.array([fit[i] for fit in fits]) for i in range(3))
        scores = np.full((n_outputs, len(grid)), np.nan)
        for row, fit in zip(scores, fits):
            if fit[3] is not None:
                row[:] = fit[3]
        return weight, bias, C, None if np.isnan(scores).all() else scores
    return _fit_softmax(X, y.astype(np.int64), w, n_outputs, C, grid, auto, seed)


def _logistic(C: float, warm_start: bool = False) -> LogisticRegression:
    return LogisticRegression(C=C, tol=TOL, max_iter=MAX_ITER, warm_start=warm_start)


def _fit_logistic(X, y, w, C, grid, auto: float, seed: int):
    """``LogisticRegression`` with ``C``, or with the cross-validated one: (model, C, scores or None)."""
    scores = None
    if C == "cv":
        C, scores = _cross_validate(X, y, w, grid, auto, seed)
    return _logistic(C).fit(X, y, sample_weight=w), C, scores


def _cross_validate(X, y, w, grid, auto: float, seed: int) -> tuple[float, np.ndarray | None]:
    """The grid value of least mean weighted validation log-loss, and the scores along the path."""
    labels, counts = np.unique(y, return_counts=True)
    if counts.min() < N_FOLDS:
        return auto, None
    folds = list(StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(X, y))
    models = [_logistic(grid[0], warm_start=True) for _ in folds]  # each fit starts from the last
    scores: list[float] = []
    for C in grid:
        scores.append(np.mean([
            log_loss(y[valid], model.set_params(C=C).fit(X[train], y[train], sample_weight=w[train])
                     .predict_proba(X[valid]), sample_weight=w[valid], labels=labels)
            for model, (train, valid) in zip(models, folds)
        ]))
        if len(scores) - 1 - int(np.argmin(scores)) >= PATIENCE:
            break
    return float(grid[np.argmin(scores)]), np.pad(scores, (0, len(grid) - len(scores)), constant_values=np.nan)


def _fit_softmax(X, codes, w, n_outputs: int, C, grid, auto: float, seed: int):
    present = np.unique(codes)
    weight, bias = np.zeros((n_outputs, X.shape[1])), np.zeros(n_outputs)
    scores = None
    if len(present) > 1:
        model, C, scores = _fit_logistic(X, codes, w, C, grid, auto, seed)
        coef, intercept = model.coef_, model.intercept_
        if len(present) == 2:  # one decision function d(x): rows -d/2 and +d/2 give the same softmax
            coef, intercept = np.vstack([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        weight[present], bias[present] = coef, intercept
    elif C == "cv":
        C = auto
    absent = np.setdiff1d(np.arange(n_outputs), present)
    if absent.size:  # at most about exp(UNSEEN_LOG_ODDS) probability on every training sample
        bias[absent] = logsumexp(X @ weight[present].T + bias[present], axis=1).min() + UNSEEN_LOG_ODDS
    return weight, bias, C, scores


def _fit_binary(X, y, w, C, grid, auto: float, seed: int):
    """One label's sigmoid: (weight row, bias, C, cv scores or None)."""
    values = np.unique(y)
    if len(values) < 2:  # never (or always) positive: no finite optimum
        bias = UNSEEN_LOG_ODDS if values[0] == 0 else -UNSEEN_LOG_ODDS
        return np.zeros(X.shape[1]), bias, auto if C == "cv" else C, None
    model, C, scores = _fit_logistic(X, y, w, C, grid, auto, seed)
    return model.coef_[0], float(model.intercept_[0]), C, scores


def _fit_ridge(X, Y, w, C, grid):
    scores = None
    if C == "cv":
        model = RidgeCV(alphas=1.0 / grid, store_cv_results=True).fit(X, Y, sample_weight=w)
        C, scores = float(1.0 / model.alpha_), model.cv_results_.reshape(len(X), -1, len(grid)).mean(axis=(0, 1))
    else:
        model = Ridge(alpha=1.0 / C).fit(X, Y, sample_weight=w)
    return model.coef_.reshape(Y.shape[1], -1), np.reshape(model.intercept_, -1), C, scores

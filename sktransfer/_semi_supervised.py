"""Unlabelled rows: the ``SelfTraining`` strategy object, the value of a classifier's ``semi_supervised``.

Rows whose label is masked (-1, None or NaN; see :mod:`sktransfer._domain`) are unlabelled training
rows when ``semi_supervised`` is set. How they train depends on how the fit trains its head:

- **the head is solved to convergence** (the frozen default, or after contrastive fine-tuning): self-training
  in rounds (:func:`self_train`), as scikit-learn's ``SelfTrainingClassifier`` but inside the one fit, on the
  embeddings the fit computed once (cached): solve the head on the labelled rows, pseudo-label the
  unlabelled rows it is surest of (per class a growing share of what the first head predicted), solve
  again on both, for ``max_rounds``. The embeddings' standardisation is fitted on the labelled and the
  unlabelled rows together.
- **the head trains by epochs** (``C=None``, a hidden layer, a training backbone without contrastive
  tuning): the pseudo-label stream (:mod:`sktransfer._streams.pseudo_label`): each batch holds as many
  unlabelled rows as labelled ones, and an unlabelled row the model predicts with probability at least
  ``threshold`` learns that prediction (Lee, 2013), its term ramped up over the first half of training.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._persistence import register_parameter_object
from ._validation import Interval, StrOptions, positive_int, positive_real, resolve_parameter_object


class SelfTraining(BaseEstimator):
    """Self-training on the fit's unlabelled rows: the value of a classifier's ``semi_supervised``.

    Rows whose label is masked (-1, or None/NaN for string labels) learn the labels the model predicts
    for them with confidence. With a solved head (the frozen default, or after contrastive fine-tuning)
    this takes rounds of the head's solver on the embeddings computed once; with a head trained by
    epochs, a pseudo-label term on the unlabelled rows of each batch. Its parameters are the estimator's
    nested parameters (``semi_supervised__threshold``), so a grid search can tune them.

    Parameters
    ----------
    threshold : float in (0, 1) or None, default=None
        An unlabelled row may take its predicted label only when its predicted probability is at least
        this. None: where the head is solved, no floor (each round's quota decides); where it trains by
        epochs, 0.95 (FixMatch's).
    max_rounds : int, default=5
        Rounds of pseudo-labelling where the head is solved: round ``r`` labels, for each class, the
        rows the latest head predicts as it most confidently, ``r / max_rounds`` as many as the head
        solved on the labelled rows alone predicted as it (curriculum labelling), and solves again.
    weight : float, default=1.0
        Where the head trains by epochs: the factor of the unlabelled rows' pseudo-label loss.

    See Also
    --------
    sklearn.semi_supervised.SelfTrainingClassifier : The same rounds around any classifier, refitted each round.

    Examples
    --------
    >>> from sktransfer import PretrainedTextClassifier, SelfTraining
    >>> clf = PretrainedTextClassifier(semi_supervised=SelfTraining(threshold=0.8))
    >>> clf.get_params()["semi_supervised__threshold"]
    0.8
    """

    _parameter_constraints = {
        "threshold": [Interval(Real, 0, 1, closed="neither"), None],
        "max_rounds": [positive_int],
        "weight": [positive_real],
    }

    def __init__(self, *, threshold: float | None = None, max_rounds: int = 5, weight: float = 1.0):
        self.threshold = threshold
        self.max_rounds = max_rounds
        self.weight = weight


register_parameter_object(SelfTraining)

SEMI_SUPERVISED_PARAMETERS = {"semi_supervised": [StrOptions({"self_training"}), SelfTraining, None]}


def resolve_semi_supervised(value: SelfTraining | str | None) -> SelfTraining | None:
    """The strategy a fit uses: "self_training" is ``SelfTraining()``; its parameters are checked."""
    return resolve_parameter_object(value, lambda name: SelfTraining())


def choose_semi_supervised(estimator) -> None:
    """Decide ``semi_supervised_`` once the targets are encoded (``n_pseudo_labelled_`` from 0); warn when it
    has no rows to work on."""
    strategy = resolve_semi_supervised(estimator.semi_supervised)
    if strategy is not None and (estimator.multilabel_ or estimator.multioutput_):
        raise ValueError("semi_supervised pseudo-labels rows with one predicted class: it needs a single-label y "
                         "(1-D labels, -1 or None marking the unlabelled rows). Set semi_supervised=None.")
    if strategy is not None and not estimator.n_unlabelled_rows_:
        warnings.warn(f"{type(estimator).__name__}: semi_supervised={estimator.semi_supervised!r} has no effect: y "
                      "has no unlabelled rows. Mark the rows without labels with -1 (None for string labels), or "
                      "set semi_supervised=None.", UserWarning, stacklevel=5)
        strategy = None
    estimator.semi_supervised_ = strategy
    estimator.n_pseudo_labelled_ = 0  # counted by the self-training rounds (the stream labels per batch)


def _class_weights(y: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray | None:
    """Each class's mean labelled weight (class weights folded in): the weight of a row pseudo-labelled so."""
    if weights is None:
        return None
    total = np.bincount(y, weights=weights, minlength=n_classes)
    count = np.bincount(y, minlength=n_classes)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32)


def _curriculum(proba: np.ndarray, quotas: np.ndarray, threshold: float | None) -> np.ndarray:
    """The rows that take their predicted class this round: for each class, the most confident of the rows
    predicted as it (those at least ``threshold``), up to its quota, every class filled to the same fraction
    of its quota (the least any class can fill)."""
    predicted, confidence = proba.argmax(axis=1), proba.max(axis=1)
    candidates = [np.flatnonzero((predicted == c) & (confidence >= (threshold or 0.0))) for c in range(len(quotas))]
    fill = min((min(1.0, len(rows) / quota) for rows, quota in zip(candidates, quotas) if quota > 0), default=0.0)
    taken = np.zeros(len(proba), dtype=bool)
    for rows, quota in zip(candidates, quotas):
        taken[rows[np.argsort(-confidence[rows], kind="stable")][:int(fill * quota)]] = True
    return taken


def self_train(solve: Callable, head: torch.nn.Module, labelled: np.ndarray, y: np.ndarray,
               weights: np.ndarray | None, unlabelled: np.ndarray, strategy: SelfTraining):
    """Rounds of pseudo-labelling around ``solve(features, y, weights) -> C`` (which puts the solution into
    ``head``), on standardised ``labelled`` and ``unlabelled`` features; return the last C and each
    unlabelled row's pseudo-label (-1: none).

    Round ``r`` of ``R`` (curriculum labelling, Cascante-Bonilla et al., 2021) labels, for each class, the
    unlabelled rows the current head predicts as it most confidently, ``r / R`` as many as the first head
    (labelled rows alone) predicted as it (those at least ``threshold``, each class filled to the same
    fraction), with the current head's labels, and solves again on them and the labelled rows.

    Measured on frozen MiniLM embeddings (``benchmarks/semi_supervised.py``; SST-2 at 100 and 200 labels,
    TREC at 8 and 32 per class, 3 draws), the choices: ranks rather than a fixed probability (0.75, as
    ``SelfTrainingClassifier``: TREC at 8 per class fell from 52 to 31 %, the strongly penalised first head
    being unsure of everything); the first head's class counts, not the labelled rows' (a balanced draw's
    shares forced on TREC's unbalanced classes: 69 to 62 % at 32 per class) nor the current head's (the
    favoured class grew each round: SST-2 at 100 labels 70 to 64 %).
    """
    C = solve(labelled, y, weights)
    pseudo = np.full(len(unlabelled), -1, dtype=np.int64)
    class_weights = _class_weights(y, weights, head.layers[-1].out_features)
    inputs = torch.as_tensor(unlabelled, dtype=torch.float32, device=head.layers[-1].weight.device)
    counts = None
    for round_ in range(1, strategy.max_rounds + 1):
        with torch.no_grad():
            proba = torch.softmax(head.layers[-1](inputs).float(), dim=1).cpu().numpy()
        if counts is None:
            counts = np.bincount(proba.argmax(axis=1), minlength=proba.shape[1])
        taken = _curriculum(proba, np.ceil(round_ / strategy.max_rounds * counts), strategy.threshold)
        if not taken.any():
            break
        pseudo = np.where(taken, proba.argmax(axis=1), -1)
        C = solve(np.concatenate([labelled, unlabelled[taken]]), np.concatenate([y, pseudo[taken]]),
                  None if weights is None else np.concatenate([weights, class_weights[pseudo[taken]]]))
    return C, pseudo

"""Few labels: the ``Contrastive`` strategy object, the value of a classifier's ``contrastive`` parameter.

Its stream (:mod:`sktransfer._streams.contrastive`) tunes the backbone on in-batch pairs of training rows,
then the linear head is solved to convergence on the tuned embeddings, as SetFit does.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ._persistence import register_parameter_object
from ._validation import StrOptions, positive_int, resolve_parameter_object

LOSSES = ("cosine", "supcon", "triplet")


class Contrastive(BaseEstimator):
    """Contrastive fine-tuning from few labels: the value of a classifier's ``contrastive`` parameter.

    The backbone is tuned so that the embeddings of same-class training rows grow similar and those of
    different classes dissimilar, with every pair of rows within each training batch (each epoch
    orders the rows in same-class pairs, so every row has a positive in its batch); the classification
    loss is off meanwhile. Then the linear head is solved to convergence (``C``) on the tuned
    embeddings, as SetFit does. Its parameters are the estimator's nested parameters
    (``contrastive__loss``), so a grid search can tune them.

    Parameters
    ----------
    loss : {"cosine", "supcon", "triplet"}, default="cosine"
        "cosine": SetFit's loss, the squared error between each pair's cosine similarity and 1 (same
        class) or 0 (different classes), the two kinds of pair weighted alike. "supcon": the supervised
        contrastive loss (temperature 0.1). "triplet": the batch-hard triplet loss on cosine distances
        (margin 0.25).
    min_steps : int or "auto", default="auto"
        Each epoch takes at least this many training steps (going round the training rows as often
        as that needs), so that a few dozen labelled rows still tune the backbone for ``max_epochs``
        epochs; with more rows an epoch is one pass. "auto" is one step per class beyond the first
        (a binary task: 1, ten steps in all by default, about as many as SetFit takes at 8 texts per
        class; six classes: 5). ``benchmarks/results/few_shot.md`` compares it with 5 steps on every
        set ("min_steps=5", the earlier default): four times the fit time on binary sets.

    See Also
    --------
    PretrainedTextClassifier : Its ``contrastive`` parameter takes a ``Contrastive``.

    Examples
    --------
    >>> from sktransfer import Contrastive, PretrainedTextClassifier
    >>> clf = PretrainedTextClassifier(contrastive=Contrastive(loss="supcon"), freeze_layers=-2)
    >>> clf.get_params()["contrastive__loss"]
    'supcon'
    """

    _parameter_constraints = {
        "loss": [StrOptions(set(LOSSES))],
        "min_steps": [positive_int, StrOptions({"auto"})],
    }

    def __init__(self, *, loss: str = "cosine", min_steps: int | str = "auto"):
        self.loss = loss
        self.min_steps = min_steps

    def steps_per_epoch(self, n_classes: int) -> int:
        """The least number of training steps an epoch takes.

        Parameters
        ----------
        n_classes : int
            The number of classes of the fit.

        Returns
        -------
        int
            ``min_steps``, "auto" resolved as one step per class beyond the first (at least one).
        """
        return max(1, n_classes - 1) if self.min_steps == "auto" else self.min_steps


register_parameter_object(Contrastive)


def resolve_contrastive(value: Contrastive | str | None) -> Contrastive | None:
    """The strategy a fit uses: a loss name is ``Contrastive(loss=name)``; its parameters are checked.
    "auto" (decided at fit by :func:`choose_few_shot`) is None here."""
    return resolve_parameter_object(None if value == "auto" else value, lambda name: Contrastive(loss=name))


AUTO_ROWS_PER_CLASS = 16
"""``contrastive="auto"`` tunes the backbone where the median class has at most this many labelled rows."""
AUTO_MODALITIES = ("text",)
"""Where ``contrastive="auto"`` may tune the backbone (measured in ``benchmarks/few_shot.py``)."""
CONTRASTIVE_FREEZE = {"text": "none", "image": -3}
"""What ``freeze_layers="auto"`` trains under contrastive fine-tuning: all of a text backbone (as SetFit's
body), an image backbone's top three blocks."""


def head_is_solved(estimator) -> bool:
    """Whether the linear head is solved to convergence (``C``) rather than trained by epochs."""
    return estimator.C is not None and not estimator.head_hidden and estimator._solver_kind() is not None


def _auto_applies(estimator, y_encoded: np.ndarray, warm: bool) -> bool:
    """Whether this fit is the few-label case ``contrastive="auto"`` tunes the backbone for: a single-label
    fit, from scratch, whose median class has 2 to ``AUTO_ROWS_PER_CLASS`` rows, with nothing else chosen
    that trains the backbone or adds rows (``freeze_layers``, ``adapter``, ``teacher``, domain adaptation)."""
    if (warm or estimator._modality not in AUTO_MODALITIES or estimator.multilabel_ or estimator.multioutput_
            or estimator.freeze_layers != "auto" or estimator.adapter is not None
            or estimator.unfreeze_every is not None or estimator.teacher is not None
            or estimator.domain_adaptation is not None or estimator.early_stopping
            or not head_is_solved(estimator)):
        return False
    counts = np.bincount(y_encoded, minlength=len(estimator.classes_))
    return counts.min() >= 2 and np.median(counts) <= AUTO_ROWS_PER_CLASS


def choose_few_shot(estimator, y_encoded: np.ndarray, *, warm: bool) -> None:
    """Decide this fit's ``contrastive_`` and ``freeze_layers_`` (after the targets are encoded).

    ``contrastive="auto"`` is ``Contrastive()`` in the few-label case (:func:`_auto_applies`), else None;
    ``freeze_layers="auto"`` trains what contrastive fine-tuning needs (:data:`CONTRASTIVE_FREEZE`) when it
    is on, else nothing (``"all"``). An explicit ``contrastive`` is checked against the targets.
    """
    if estimator.contrastive == "auto":
        strategy = Contrastive() if _auto_applies(estimator, y_encoded, warm) else None
    else:
        strategy = resolve_contrastive(estimator.contrastive)
        check_contrastive_targets(estimator, strategy, y_encoded)
    estimator.contrastive_ = strategy
    if estimator.freeze_layers == "auto":
        estimator.freeze_layers_ = "all" if strategy is None else CONTRASTIVE_FREEZE[estimator._modality]
    else:
        estimator.freeze_layers_ = estimator.freeze_layers


def check_contrastive_targets(estimator, strategy: Contrastive | None, y_encoded: np.ndarray) -> None:
    """Contrastive pairs need one label per row and two rows of each class."""
    if strategy is None:
        return
    if estimator.multilabel_ or estimator.multioutput_:
        raise ValueError("contrastive fine-tuning pairs rows by their one label: it needs a single-label y "
                         "(1-D labels), not a multi-label or multi-output y. Set contrastive=None.")
    counts = np.bincount(y_encoded, minlength=len(estimator.classes_))
    if (counts < 2).any():
        lonely = estimator.classes_[counts < 2].tolist()
        raise ValueError(f"contrastive fine-tuning needs at least 2 labelled rows of each class (a same-class pair), "
                         f"but class(es) {lonely[:5]} have one: add rows of those classes, or set contrastive=None.")
    if estimator.early_stopping and head_is_solved(estimator):
        raise ValueError("early_stopping watches the head's validation loss, but with contrastive fine-tuning the "
                         "head is solved only after the backbone trains: set early_stopping=False, or C=None to "
                         "train the head beside the contrastive term.")

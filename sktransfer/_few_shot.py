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
    min_steps : int, default=5
        Each epoch takes at least this many training steps (going round the training rows as often
        as that needs), so that a few dozen labelled rows still tune the backbone (``max_epochs``
        epochs: 50 steps by default); with more rows an epoch is one pass. Measured on TREC and Amazon
        books at 8 rows per class, 10 per epoch took twice the time for no gain.

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
        "min_steps": [positive_int],
    }

    def __init__(self, *, loss: str = "cosine", min_steps: int = 5):
        self.loss = loss
        self.min_steps = min_steps


register_parameter_object(Contrastive)


def resolve_contrastive(value: Contrastive | str | None) -> Contrastive | None:
    """The strategy a fit uses: a loss name is ``Contrastive(loss=name)``; its parameters are checked."""
    return resolve_parameter_object(value, lambda name: Contrastive(loss=name))


def check_contrastive_targets(estimator, y_encoded: np.ndarray) -> None:
    """After the targets are encoded: contrastive pairs need one label per row and two rows of each class."""
    if estimator.contrastive is None:
        return
    if estimator.multilabel_ or estimator.multioutput_:
        raise ValueError("contrastive fine-tuning pairs rows by their one label: it needs a single-label y "
                         "(1-D labels), not a multi-label or multi-output y. Set contrastive=None.")
    counts = np.bincount(y_encoded, minlength=len(estimator.classes_))
    if (counts < 2).any():
        lonely = estimator.classes_[counts < 2].tolist()
        raise ValueError(f"contrastive fine-tuning needs at least 2 labelled rows of each class (a same-class pair), "
                         f"but class(es) {lonely[:5]} have one: add rows of those classes, or set contrastive=None.")
    if estimator.early_stopping and estimator.C is not None and not estimator.head_hidden:
        raise ValueError("early_stopping watches the head's validation loss, but with contrastive fine-tuning the "
                         "head is solved only after the backbone trains: set early_stopping=False, or C=None to "
                         "train the head beside the contrastive term.")

"""The fit plan: what one ``fit`` decided, in the order it decided it.

:meth:`~sktransfer._training.TrainableEstimator._plan_fit` builds a :class:`FitPlan` in one ordered
place, as skorch's ``NeuralNet.initialize()`` builds its objects: the module and its blocks, what
trains, what is precomputed (the :class:`Stage`), the train/validation split, the datasets, the
sampler, the collate function and the callbacks. Building the skorch net, predicting and saving
read the plan (or the fitted attributes recorded from it); none of them decides again.

A :class:`~sktransfer._batch.Stage` (see :mod:`sktransfer._batch`) names what the net's inputs are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._batch import SAMPLE_WEIGHT, Stage

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset, Sampler

    from ._heads import TransferModule
    from ._optim import Rates
    from ._prefix import PrefixSplit


@dataclass
class Trainable:
    """What trains in the backbone, as the freezing (or adapter) step decided it."""

    blocks: list[list[str]]
    n_params: int
    lora_targets: list[str] | None = None

    @property
    def backbone_frozen(self) -> bool:
        return self.n_params == 0


@dataclass
class LabelledRows:
    """Labelled training rows: their inputs, encoded targets and sample weights (None: unweighted)."""

    items: list
    y: np.ndarray
    weights: np.ndarray | None


@dataclass
class FitPlan:
    """Everything a fit trains with. Only ``module`` and ``blocks`` are needed to predict (``rates`` None:
    an inference-only net)."""

    module: TransferModule
    blocks: list[list[str]]
    stage: Stage = Stage.RAW
    rates: Rates | None = None
    prefix: PrefixSplit | None = None
    epochs: int = 1
    train_data: Dataset | None = None
    valid_data: Dataset | None = None
    sampler: Sampler | None = None
    collate: Any = None
    """The inputs' collate function (None: torch's default), for validation and prediction batches."""
    train_collate: Any = None
    """The training batches' collate function when it differs from ``collate`` (the training streams')."""
    train_batch_size: int | None = None
    """Rows per training batch (None: ``batch_size``)."""
    steps: int = 1
    """Training steps of the fit (epochs times batches per epoch): the one count the schedule and the
    streams read."""
    streams: tuple = ()
    """The training streams beyond the labelled rows (see :mod:`sktransfer._streams`); then ``train_data``
    holds every row they train on, each with its domain and the streams' per-row data."""
    num_workers: int = 0
    callbacks: list[tuple[str, Any]] = field(default_factory=list)
    head_solver: str | None = None
    """The task's kind ("multiclass", "multilabel", "regression") when the linear head is solved to
    convergence on the embeddings instead of trained by epochs (see :mod:`sktransfer._converged_head`)."""

    tuned_head: str | None = None
    """The task's kind when, after training, the linear head is solved to convergence on the tuned backbone's
    embeddings of ``tuned_rows`` (a stream's ``solves_head``; see
    :func:`~sktransfer._converged_head.solve_tuned_head`)."""
    tuned_rows: LabelledRows | None = None
    """The labelled training rows, for ``tuned_head``."""
    self_training: Any = None
    """The ``SelfTraining`` strategy when the solved head self-trains in rounds on ``unlabelled_items``
    (see :mod:`sktransfer._semi_supervised`)."""
    unlabelled_items: list | None = None
    """The unlabelled rows' inputs, for ``self_training``."""
    unlabelled_values: np.ndarray | None = None
    """Their frozen backbone's embeddings, where the head is solved on precomputed embeddings."""

    @property
    def suffix(self) -> nn.Module | None:
        """The trainable top of the encoder that frozen-prefix inputs run through."""
        return None if self.prefix is None else self.prefix.suffix


def precomputed_dataset(stage: Stage, values: np.ndarray, y: np.ndarray, weights: np.ndarray | None):
    """A skorch dataset of precomputed inputs, under the key the module reads for ``stage``."""
    from skorch.dataset import Dataset as SkorchDataset

    x = {stage.value: values}
    if weights is not None:
        x[SAMPLE_WEIGHT] = weights
    return SkorchDataset(x, y)

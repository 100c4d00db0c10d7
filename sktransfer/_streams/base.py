"""The training-stream protocol: what one kind of training rows brings to a fit, and its registry.

A fit trains on its labelled rows with the task's loss. A **training stream** adds to that:

- **its rows**: the labelled training rows, and, with ``uses_unlabelled``, the fit's unlabelled rows
  (masked labels, or ``sample_domain < 0``; see :mod:`sktransfer._domain`). The plan puts every row any
  stream uses into one dataset (:mod:`sktransfer._streams.data`), built as the labelled rows' is
  (precomputed embeddings or frozen-prefix outputs, or raw inputs);
- **what each batch carries for it**: every row's role under :data:`SAMPLE_DOMAIN` (skada's convention:
  ``>= 0`` labelled, ``< 0`` unlabelled), and the stream's per-row data (:meth:`TrainingStream.batch_data`)
  under its own ``key`` of the batch dict, never inside ``y``;
- **its loss term** (:meth:`TrainingStream.loss`), times ``weight``, added by the task's one net to the
  task loss of the labelled rows (their mean, times every stream's :meth:`TrainingStream.task_weight`);
- optionally **trainable modules** of its own (:meth:`TrainingStream.modules`), trained in a parameter
  group at the head's learning rate (:meth:`TrainingStream.module_groups`).

A stream module defines a subclass and registers a factory with :func:`register_stream`; the factory
reads the estimator's parameters and returns the stream, or None when the fit does not use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from .._optim import param_groups

SAMPLE_DOMAIN = "sample_domain"
"""Batch key of each row's role: >= 0 labelled (source) rows, < 0 unlabelled (target) rows, as in skada."""


@dataclass
class StreamRows:
    """The rows of the streams' training dataset: the labelled training rows, then the unlabelled rows."""

    items: list
    """Their inputs, as the estimator received them (images or texts)."""
    n_labelled: int


@dataclass
class StreamBatch:
    """What a stream's loss term reads of one training batch."""

    outputs: torch.Tensor
    """The head's outputs (logits), one row per row of the batch."""
    targets: torch.Tensor
    """The rows' encoded targets (meaningful for the labelled rows only)."""
    features: torch.Tensor
    """The inputs of the head's last linear layer (the last hidden layer's output, else the standardised
    embedding)."""
    labelled: torch.Tensor
    """True for the labelled rows, False for the unlabelled ones."""
    data: torch.Tensor | None
    """The stream's per-row data (what :meth:`TrainingStream.batch_data` returned), None without."""
    weights: torch.Tensor | None
    """The rows' sample weights (1 for unlabelled rows), None without ``sample_weight``."""
    progress: float
    """The share of the fit's training steps done before this one, from 0 to 1."""
    modules: dict[str, nn.Module]
    """The stream's own modules (:meth:`TrainingStream.modules`), by name."""


class TrainingStream:
    """One stream of training rows and the loss term it adds to the task's loss.

    Subclasses set ``name`` and, if they carry per-row data, ``key``; they implement :meth:`loss`.
    """

    name: ClassVar[str]
    key: ClassVar[str | None] = None
    """Batch key of the stream's per-row data, None when it has none."""
    uses_unlabelled: ClassVar[bool] = False
    """Whether the fit's unlabelled rows join the training batches for this stream."""
    paired: ClassVar[bool] = False
    """Whether every batch needs labelled and unlabelled rows alike (as many of each)."""
    solves_head: ClassVar[bool] = False
    """Whether, after training, the linear head is solved to convergence on the tuned backbone's embeddings
    of the labelled rows (where ``C`` is not None and the head has no hidden layer)."""
    weight: float = 1.0
    """Factor of the stream's loss term."""

    def check(self, estimator: Any) -> None:
        """Raise a ValueError naming the fix when this fit cannot train the stream (called once per fit)."""

    def sampler(self, labels: np.ndarray) -> Sampler | None:
        """The order of the training rows in each epoch, given the labelled rows' encoded ``labels`` (None:
        the estimator's own). Only for streams without unlabelled rows; at most one stream of a fit orders."""
        return None

    def batch_data(self, estimator: Any, rows: StreamRows) -> np.ndarray | None:
        """The stream's data for each row of ``rows`` (one row of the result per row), travelling under ``key``."""
        return None

    def task_weight(self, batch: StreamBatch) -> float | torch.Tensor:
        """Factor of the task loss of the batch's labelled rows (the factors of all streams multiply)."""
        return 1.0

    def loss(self, batch: StreamBatch) -> torch.Tensor:
        """The stream's loss term on one training batch (a scalar)."""
        raise NotImplementedError

    def modules(self, in_features: int) -> dict[str, nn.Module]:
        """Trainable modules of the stream, by name, for features of width ``in_features``."""
        return {}

    def module_groups(self, module: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        """The optimizer's parameter groups for one of the stream's modules (the head's rate by default)."""
        return param_groups(module, [], lr=lr, weight_decay=weight_decay)


StreamFactory = Callable[[Any], "TrainingStream | None"]
STREAMS: dict[str, StreamFactory] = {}
"""The registered stream factories, by name, in registration order (the order of the loss terms)."""


def register_stream(name: str) -> Callable[[StreamFactory], StreamFactory]:
    """Register a factory that returns the stream ``name`` for an estimator, or None where it does not apply.

    Examples
    --------
    >>> @register_stream("my_stream")
    ... def _my_stream(estimator):
    ...     return None  # e.g. MyStream(estimator.my_weight) when the estimator asks for it
    >>> "my_stream" in STREAMS
    True
    >>> del STREAMS["my_stream"]
    """
    def register(factory: StreamFactory) -> StreamFactory:
        STREAMS[name] = factory
        return factory

    return register


def training_streams(estimator: Any) -> tuple[TrainingStream, ...]:
    """The streams this estimator's fit trains with, in registration order."""
    return tuple(stream for make in STREAMS.values() if (stream := make(estimator)) is not None)

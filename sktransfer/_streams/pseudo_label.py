"""Self-training as a training stream, where the head trains by epochs: pseudo-labels for the unlabelled rows.

Every batch holds as many labelled rows as unlabelled ones (``paired``). An unlabelled row whose
predicted probability (the batch's own forward pass, no gradient through it) is at least the
threshold learns its predicted class by cross-entropy (Lee, 2013); the term is the mean over the
batch's unlabelled rows (rows below the threshold count zero), ramped up linearly over the first half
of the fit's steps while the head's predictions are still poor. Unlike the registered streams it is
added by the fit plan (:func:`pseudo_label_stream`): whether it applies depends on whether the plan
solves the head, which self-training then does in rounds instead (:mod:`sktransfer._semi_supervised`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from .._semi_supervised import SelfTraining
from .base import StreamBatch, TrainingStream

STREAM_THRESHOLD = 0.95
"""The threshold where ``SelfTraining(threshold=None)`` trains by epochs (FixMatch's)."""
RAMP = 0.5
"""The share of the fit's steps over which the pseudo-label term is ramped up from 0 to its weight."""


class PseudoLabelStream(TrainingStream):
    """``semi_supervised`` with a head trained by epochs: confident predictions of unlabelled rows as labels."""

    name = "pseudo_label"
    uses_unlabelled = True
    paired = True

    def __init__(self, strategy: SelfTraining):
        self.threshold = STREAM_THRESHOLD if strategy.threshold is None else strategy.threshold
        self.weight = strategy.weight

    def loss(self, batch: StreamBatch) -> torch.Tensor:
        unlabelled = batch.outputs[~batch.labelled].float()
        if not len(unlabelled):
            return batch.outputs.sum() * 0.0
        confidence, pseudo = torch.softmax(unlabelled.detach(), dim=1).max(dim=1)
        per_row = F.cross_entropy(unlabelled, pseudo, reduction="none") * (confidence >= self.threshold)
        return min(1.0, batch.progress / RAMP) * per_row.mean()


def pseudo_label_stream(estimator: Any, head_solved: bool) -> tuple[PseudoLabelStream, ...]:
    """The stream where the fit self-trains and its head trains by epochs (else none)."""
    strategy = getattr(estimator, "semi_supervised_", None)
    return () if strategy is None or head_solved else (PseudoLabelStream(strategy),)

"""Knowledge distillation as a training stream: the teacher's softened predictions for every training row.

The soft targets (:func:`~sktransfer._distill.soft_targets`, one ``predict_proba`` per fit) travel
under :data:`SOFT_TARGETS`. Per row, the loss is ``(1 - w) CE(label) + w T^2 KL(p_T || softmax(z / T))``
(Hinton et al., 2015), without the cross-entropy for unlabelled rows, averaged over the batch's rows:
the stream's term is the mean KL (weight ``w``, ``distill_weight``), and it weighs the task loss (the
labelled rows' mean) by ``1 - w`` times the labelled rows' share of the batch. With domain adaptation
too, the unlabelled rows are the target rows: they are aligned with the source rows and learn the
teacher's predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .._distill import soft_targets
from .base import StreamBatch, StreamRows, TrainingStream, register_stream

SOFT_TARGETS = "soft_targets"


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row, ``T^2 KL(soft || softmax(logits / T))``: the student's distance to the softened teacher."""
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    return temperature ** 2 * (torch.xlogy(soft, soft) - soft * log_student).sum(dim=1)


class DistillationStream(TrainingStream):
    """``teacher=``: ``distill_weight`` times the distance to the teacher's soft targets at ``distill_temperature``."""

    name = "distillation"
    key = SOFT_TARGETS
    uses_unlabelled = True

    def __init__(self, temperature: float, weight: float):
        self.temperature, self.weight = temperature, weight

    def task_weight(self, batch: StreamBatch) -> torch.Tensor:
        # Per row: (1 - w) CE + w KL, averaged over every row of the batch (unlabelled rows have no CE).
        return (1.0 - self.weight) * batch.labelled.float().mean()

    def batch_data(self, estimator: Any, rows: StreamRows) -> np.ndarray:
        soft = soft_targets(estimator.teacher, rows.items, estimator.classes_, self.temperature)
        return soft.astype(np.float32)

    def loss(self, batch: StreamBatch) -> torch.Tensor:
        per_row = distillation_loss(batch.outputs, batch.data.float(), self.temperature)
        return (per_row if batch.weights is None else per_row * batch.weights).mean()


@register_stream(DistillationStream.name)
def _distillation(estimator: Any) -> DistillationStream | None:
    if getattr(estimator, "teacher", None) is None:
        return None
    return DistillationStream(estimator.distill_temperature, estimator.distill_weight)

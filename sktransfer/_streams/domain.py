"""Domain adaptation as a training stream: the unlabelled target rows, and the term that aligns their features.

Every batch holds as many labelled source rows as unlabelled target rows (``paired``); the term
(:func:`~sktransfer._domain_losses.adaptation_loss`: DANN, CORAL or MMD) compares the features of the
two, and DANN trains its own :class:`~sktransfer._domain_losses.DomainDiscriminator` behind a reversed
gradient ramped up over the fit's steps (:func:`~sktransfer._domain_losses.dann_ramp`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._domain_losses import DomainDiscriminator, adaptation_loss, dann_ramp
from .base import StreamBatch, TrainingStream, register_stream


class DomainAdaptationStream(TrainingStream):
    """``domain_adaptation=method``: ``adaptation_weight`` times its term between source and target features."""

    name = "domain_adaptation"
    uses_unlabelled = True
    paired = True

    def __init__(self, method: str, weight: float):
        self.method, self.weight = method, weight

    def check(self, estimator: Any) -> None:
        if (estimator.n_trainable_backbone_params_ == 0 and estimator.unfreeze_every is None
                and not estimator.head_hidden):
            raise ValueError(
                f"domain_adaptation={self.method!r} aligns trainable features, but with freeze_layers="
                f"{estimator.freeze_layers!r} no backbone weight trains and the head has no hidden layer. Add one "
                "(e.g. head_hidden=(256,)), or let some blocks train (e.g. freeze_layers=-2, or 'none')."
            )

    def modules(self, in_features: int) -> dict[str, nn.Module]:
        return {"discriminator": DomainDiscriminator(in_features)} if self.method == "dann" else {}

    def loss(self, batch: StreamBatch) -> torch.Tensor:
        coeff = dann_ramp(batch.progress) if self.method == "dann" else 1.0
        return adaptation_loss(self.method, batch.features[batch.labelled], batch.features[~batch.labelled],
                               discriminator=batch.modules.get("discriminator"), coeff=coeff)


@register_stream(DomainAdaptationStream.name)
def _domain_adaptation(estimator: Any) -> DomainAdaptationStream | None:
    method = getattr(estimator, "domain_adaptation", None)
    return None if method is None else DomainAdaptationStream(method, estimator.adaptation_weight)

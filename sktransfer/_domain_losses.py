"""The domain-adaptation loss terms: adversarial DANN, Deep CORAL, multi-kernel MMD.

Each term compares the features of the source rows and of the target rows of one training batch
(the inputs of the head's last linear layer); the domain-adaptation stream
(:mod:`sktransfer._streams.domain`) adds it, multiplied by ``adaptation_weight``, to the
classification loss of the source rows, which alone reach the task's criterion.

- ``"dann"`` (Ganin et al., JMLR 2016): a small :class:`DomainDiscriminator` learns to tell source
  from target features; between them a gradient-reversal layer (:func:`reverse_gradient`) makes the
  features learn to fool it. The reversed gradient is ramped up from 0 to 1 over training with the
  paper's schedule :func:`dann_ramp`, so the discriminator's early, noisy signal does not disturb
  the features.
- ``"coral"`` (Deep CORAL, Sun and Saenko, ECCV workshops 2016, in DomainBed's form): the mean
  squared difference between the two domains' feature covariances, plus that between their means,
  ``||C_s - C_t||_F^2 / d^2 + ||m_s - m_t||^2 / d``. (The paper's ``1 / (4 d^2)`` scaling without
  the means made the term vanish next to the classification loss on wide features.)
- ``"mmd"`` (Long et al., ICML 2015): the squared maximum mean discrepancy between the two domains'
  features under a sum of five Gaussian kernels whose bandwidths are the batch's mean squared pairwise
  distance times 1/4, 1/2, 1, 2 and 4.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

METHODS = ("dann", "coral", "mmd")
MMD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)
DISCRIMINATOR_WIDTH = 256


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff: float):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.coeff * grad_output, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity on the way forward; multiplies the gradient by ``-coeff`` on the way back."""
    return _GradientReversal.apply(x, coeff)


def dann_ramp(progress: float) -> float:
    """DANN's schedule for the reversed gradient: ``2 / (1 + exp(-10 p)) - 1``, from 0 to about 1."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class DomainDiscriminator(nn.Module):
    """Tells source features (logit > 0) from target ones: two hidden layers (BatchNorm, ReLU), one logit."""

    def __init__(self, in_features: int, width: int = DISCRIMINATOR_WIDTH):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.5), nn.Linear(width, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).squeeze(1)


def dann_loss(discriminator: nn.Module, source: torch.Tensor, target: torch.Tensor, coeff: float) -> torch.Tensor:
    """The discriminator's cross-entropy on both domains, behind a gradient reversal of ``coeff``."""
    logits = discriminator(reverse_gradient(torch.cat([source, target]), coeff))
    labels = torch.cat([logits.new_ones(len(source)), logits.new_zeros(len(target))])
    return F.binary_cross_entropy_with_logits(logits, labels)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: mean squared difference of the (unbiased) feature covariances, plus that of the means."""
    means = (source.mean(0) - target.mean(0)).pow(2).mean()
    if len(source) < 2 or len(target) < 2:
        return means
    return (torch.cov(source.T) - torch.cov(target.T)).pow(2).mean() + means


def mmd_loss(source: torch.Tensor, target: torch.Tensor, bandwidths=MMD_BANDWIDTHS) -> torch.Tensor:
    """Squared multi-kernel MMD (biased estimate) under a sum of Gaussian kernels."""
    joint = torch.cat([source, target])
    distances = torch.cdist(joint, joint).pow(2)
    scale = distances.detach().sum() / max(1, len(joint) * (len(joint) - 1))
    kernel = sum(torch.exp(-distances / (scale * b + 1e-12)) for b in bandwidths)
    n = len(source)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def adaptation_loss(method: str, source: torch.Tensor, target: torch.Tensor, *,
                    discriminator: nn.Module | None = None, coeff: float = 1.0) -> torch.Tensor:
    """The loss term of ``method`` between the source and target features of one batch."""
    source, target = source.float(), target.float()
    if len(source) == 0 or len(target) == 0:
        return source.sum() * 0.0 + target.sum() * 0.0
    if method == "dann":
        return dann_loss(discriminator, source, target, coeff)
    if method == "coral":
        return coral_loss(source, target)
    return mmd_loss(source, target)

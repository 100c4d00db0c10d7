"""The task head and the module that joins it to a backbone encoder."""

from __future__ import annotations

import torch
from torch import nn

from ._batch import SAMPLE_WEIGHT, Stage
from ._bn_folding import folded_for_inference
from ._freezing import set_norms_eval

VARIANCE_SHRINKAGE = 300.0


class Head(nn.Module):
    """Standardise features, then dropout and linear layers (``hidden`` sizes with ReLU between).

    The standardisation is a fixed affine map fitted once on training features, so that one learning
    rate suits every backbone whatever the scale of its features. Each feature's variance is shrunk
    toward the mean variance over features by ``n / (n + VARIANCE_SHRINKAGE)`` for ``n`` training rows:
    per-feature variances from a few dozen rows are noise, and dividing by them stretched noise
    directions (measured on frozen embeddings of six text and two image sets at 5-64 rows per class,
    ``benchmarks/results/standardisation.md``: against ``LogisticRegression()`` on the raw embeddings, the
    unshrunk scaling averaged -0.62 points at 8 and 16 texts per class, the shrunk one -0.18; both are
    ahead on large sets). Where the backbone trains with the head, the variances are not shrunk (not
    measured there).
    """

    def __init__(self, in_features: int, n_outputs: int, hidden: tuple[int, ...] = (), dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        layers: list[nn.Module] = []
        size = in_features
        for width in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(size, int(width)), nn.ReLU()]
            size = int(width)
        layers += [nn.Dropout(dropout), nn.Linear(size, n_outputs)]
        self.layers = nn.Sequential(*layers)

    @torch.no_grad()
    def fit_standardization(self, features: torch.Tensor, *, shrink: bool = True) -> None:
        """Fit the map on ``features``; ``shrink=False``: unshrunk per-feature variances (the backbone trains)."""
        features = features.float()
        self.mean.copy_(features.mean(0))
        if len(features) < 2:
            self.scale.fill_(1.0)
            return
        variance = features.var(0, unbiased=False)
        share = len(features) / (len(features) + VARIANCE_SHRINKAGE) if shrink else 1.0
        std = (share * variance + (1.0 - share) * variance.mean()).sqrt()
        # A feature (near) constant in the sample, e.g. a sparse one, must not be blown up on new data.
        self.scale.copy_(std.clamp(min=max(0.1 * float(std.mean()), 1e-6)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers((features.float() - self.mean) / self.scale)


class TransferModule(nn.Module):
    """Backbone encoder plus head. ``forward`` takes raw inputs, or precomputed inputs under the key
    of their :class:`~sktransfer._plan.Stage`: pooled embeddings, or the outputs of a frozen prefix,
    which run through the suffix set by ``use_suffix``.

    In training mode, frozen BatchNorm layers stay in eval mode, and so do trainable ones with
    ``freeze_bn_stats`` (their running statistics are kept; their affine weights still train)."""

    def __init__(self, encoder: nn.Module, head: Head, freeze_bn_stats: bool = True):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.freeze_bn_stats = freeze_bn_stats
        self.use_suffix(None)

    def use_suffix(self, suffix: nn.Module | None) -> None:
        """Route ``frozen_prefix`` inputs through ``suffix`` (a view sharing the encoder's modules; not registered)."""
        self.__dict__["suffix"] = suffix

    def embed(self, **inputs) -> torch.Tensor:
        """Pooled features of a batch, whatever its :class:`~sktransfer._plan.Stage`."""
        inputs.pop(SAMPLE_WEIGHT, None)
        if Stage.EMBEDDINGS.value in inputs:
            return inputs[Stage.EMBEDDINGS.value]
        if Stage.FROZEN_PREFIX.value in inputs:
            return self.suffix(inputs[Stage.FROZEN_PREFIX.value])
        if self.training:
            return self.encoder(**inputs)
        return folded_for_inference(self.encoder, {k: v[:1] for k, v in inputs.items()})(**inputs)

    def forward(self, **inputs) -> torch.Tensor:
        return self.head(self.embed(**inputs))

    def train(self, mode: bool = True) -> TransferModule:
        super().train(mode)
        if self.suffix is not None:
            self.suffix.train(mode)
        if mode:
            set_norms_eval(self.encoder, every_batchnorm=self.freeze_bn_stats)
        return self

"""The keys of a training batch: what the net's inputs are (:class:`Stage`) and the per-sample loss weights.

A batch is a dict: raw inputs by name (``pixel_values``, ``input_ids`` ...), or precomputed inputs
under their :class:`Stage`'s value, plus :data:`SAMPLE_WEIGHT`. The module that routes a batch
(:class:`~sktransfer._heads.TransferModule`) and the plan that builds the datasets both read these.
"""

from __future__ import annotations

from enum import Enum

SAMPLE_WEIGHT = "sample_weight"


class Stage(str, Enum):
    """What the trained module takes as input during a fit."""

    RAW = "raw"
    """Raw inputs (pixels, token ids): the backbone runs every step."""
    EMBEDDINGS = "features"
    """Pooled embeddings of the frozen backbone, computed once (and cached): only the head runs."""
    FROZEN_PREFIX = "frozen_prefix"
    """Outputs of the frozen lower blocks, computed once (and cached): the top blocks and the head run."""

    @property
    def precomputed(self) -> bool:
        return self is not Stage.RAW

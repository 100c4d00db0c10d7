"""Optimizers, parameter groups (layer-wise decay, head rate, no decay on biases/norms) and schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def param_groups(
    module: nn.Module,
    blocks: list[list[str]],
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float | None = None,
    head_lr: float | None = None,
    include_frozen: bool = False,
) -> list[dict]:
    """Group ``module``'s parameters by learning rate and weight decay.

    Backbone block ``i`` of ``n`` gets ``lr * layer_decay ** (n - i)``; the head gets ``head_lr`` (or
    ``lr``). Biases and normalisation weights (1-D parameters) get no weight decay.
    """
    n = len(blocks)
    block_of = {name: i for i, block in enumerate(blocks) for name in block}
    groups: dict[tuple[float, bool], dict] = {}
    for name, param in module.named_parameters():
        if not (param.requires_grad or include_frozen):
            continue
        if name.startswith("encoder."):
            depth = n - block_of.get(name[len("encoder.") :], n - 1)
            rate = lr * (layer_decay**depth if layer_decay else 1.0)
        else:
            rate = lr if head_lr is None else head_lr
        no_decay = param.ndim <= 1
        group = groups.setdefault(
            (rate, no_decay), {"params": [], "lr": rate, "weight_decay": 0.0 if no_decay else weight_decay}
        )
        group["params"].append(param)
    return list(groups.values())


def make_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """Build the named optimizer (SGD with momentum 0.9)."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    return OPTIMIZERS[name](groups, lr=lr)


class ScheduleFactor:
    """Learning-rate multiplier per optimisation step, picklable (for ``LambdaLR``).

    ``constant``, ``cosine`` and ``linear`` decay to zero after a linear warm-up over ``warmup`` of the
    steps; ``onecycle`` is a warm-up over 30 % of the steps (or ``warmup``) then cosine decay.
    """

    def __init__(self, kind: str, total_steps: int, warmup: float = 0.0):
        self.kind = kind
        self.total_steps = max(1, total_steps)
        fraction = warmup if (warmup or kind != "onecycle") else 0.3
        self.warmup_steps = int(round(fraction * self.total_steps))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

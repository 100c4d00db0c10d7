"""Parameters that have no effect in the configuration a fit chose: one warning each, naming it.

scikit-learn warns when a parameter is set but unused in the configuration chosen
(``LogisticRegression(l1_ratio=0.5)`` without ``penalty="elasticnet"``); so do the trained estimators,
after the fit plan has decided how the head trains, what trains in the backbone and which streams run.
A parameter at its default never warns.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from ._freezing import n_frozen_blocks
from ._plan import FitPlan

_EPOCH_OPTIONS = ("lr", "head_lr", "dropout", "weight_decay", "optimizer", "lr_schedule", "warmup", "max_epochs",
                  "layer_decay", "grad_accum_steps", "patience", "monitor", "time_limit", "weight_averaging")
_EARLY_STOPPING_OPTIONS = ("validation_fraction", "patience", "monitor", "refit_full")


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return False
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):
        return False


def _changed(estimator) -> set[str]:
    """The parameters set to something other than their default."""
    return {f.name for f in dataclasses.fields(estimator) if f.init and f.default is not dataclasses.MISSING
            and not _is_default(getattr(estimator, f.name), f.default)}


def ineffective_parameters(estimator, plan: FitPlan) -> dict[str, str]:
    """Each changed parameter that this fit's ``plan`` leaves without effect, with the reason."""
    changed = _changed(estimator)
    reasons: dict[str, str] = {}

    def add(names, reason: str) -> None:
        for name in names:
            if name in changed:
                reasons.setdefault(name, reason)

    if plan.head_solver is not None:
        add(_EPOCH_OPTIONS, "the linear head on the frozen backbone's embeddings is solved to convergence (C="
                            f"{estimator.C!r}), not trained by mini-batch epochs; set C=None to train it by epochs")
    elif plan.tuned_head is not None:
        add(["dropout", "head_lr"], "contrastive fine-tuning trains the backbone alone, then the linear head is "
                                    "solved on its tuned embeddings (C); set C=None to train the head by epochs")
    elif estimator.C is not None:
        add(["C"], "the head trains by mini-batch epochs here (a hidden layer, label smoothing, augmentation, a "
                   "training backbone, partial_fit or another training stream), so no penalty is solved")
    backbone_trains = estimator.n_trainable_backbone_params_ > 0 or estimator.unfreeze_every is not None
    if not backbone_trains:
        add(["freeze_bn_stats", "layer_decay"], "no backbone weight trains (freeze_layers='all')")
        if estimator.head_lr is not None:
            add(["lr"], "no backbone weight trains and head_lr sets the head's rate")
    if estimator.adapter is None and n_frozen_blocks(estimator.freeze_layers_, len(plan.blocks)) == 0:
        add(["unfreeze_every"], f"freeze_layers={estimator.freeze_layers_!r} leaves no frozen block to unfreeze")
    if estimator.weight_averaging in ("swa", "soup") and plan.epochs == 1:
        add(["weight_averaging"], "one epoch trains: the average of one epoch's weights is those weights")
    if not estimator.early_stopping:
        add(_EARLY_STOPPING_OPTIONS, "early_stopping=False: no validation split is held out")
    if not getattr(estimator, "multilabel_", True):
        add(["threshold"], "the threshold applies to multi-label targets (a 2-D 0/1 y) only")
    if getattr(estimator, "domain_adaptation", None) is None:
        add(["adaptation_weight"], "domain_adaptation=None")
    if getattr(estimator, "teacher", None) is None:
        add(["distill_temperature", "distill_weight"], "teacher=None: nothing is distilled")
    if getattr(getattr(estimator, "tta", None), "beta", None) == 1:
        add(["tta"], "its beta=1 gives the plain pass all the weight of the blend; set a beta below 1")
    return reasons


def warn_ineffective(estimator, plan: FitPlan) -> None:
    """One ``UserWarning`` per parameter this fit ignores, naming the parameter, its value and why."""
    for name, reason in ineffective_parameters(estimator, plan).items():
        warnings.warn(f"{type(estimator).__name__}: {name}={getattr(estimator, name)!r} has no effect: {reason}. "
                      f"Leave {name} at its default to silence this warning.", UserWarning, stacklevel=4)

"""Declarative hyperparameter constraints, checked at ``fit`` (scikit-learn's validation helpers).

This is the one module that touches scikit-learn's private ``_param_validation``.
"""

from __future__ import annotations

import os
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from torch import nn

from ._freezing import validate_freeze_layers

_positive_int = Interval(Integral, 1, None, closed="left")
_positive_real = Interval(Real, 0, None, closed="neither")
_fraction = Interval(Real, 0, 1, closed="left")

PARAMETER_CONSTRAINTS = {
    "backbone": [str, os.PathLike, nn.Module],
    "pretrained": ["boolean"],
    "batch_size": [_positive_int],
    "cache": ["boolean"],
    "cache_dir": [str, os.PathLike, None],
    "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
    "num_workers": [Interval(Integral, 0, None, closed="left"), None],
    "device": [StrOptions({"auto", "cpu", "cuda"}), str],
    "verbose": ["verbose"],
    "freeze_layers": [StrOptions({"all", "none"}), Integral, list, tuple],
    "lr": [_positive_real],
    "max_epochs": [_positive_int],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "dropout": [_fraction],
    "head_hidden": [tuple, list],
    "optimizer": [StrOptions({"adamw", "adam", "sgd"})],
    "lr_schedule": [StrOptions({"constant", "cosine", "linear", "onecycle"})],
    "warmup": [_fraction],
    "layer_decay": [Interval(Real, 0, 1, closed="right"), None],
    "head_lr": [_positive_real, None],
    "unfreeze_every": [_positive_int, None],
    "freeze_bn_stats": ["boolean"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "patience": [_positive_int],
    "monitor": [StrOptions({"valid_loss", "valid_acc"})],
    "refit_full": ["boolean"],
    "grad_accum_steps": [_positive_int],
    "warm_start": ["boolean"],
    "random_state": ["random_state"],
    "label_smoothing": [_fraction],
    "class_weight": [StrOptions({"balanced"}), dict, None],
    "threshold": [Interval(Real, 0, 1, closed="neither")],
    "augment": [StrOptions({"light", "standard"}), callable, None],
    "max_length": [_positive_int],
    "pooling": [StrOptions({"mean", "cls"})],
    "adapter": [StrOptions({"lora"}), None],
    "lora_r": [_positive_int],
    "lora_alpha": [_positive_real],
    "lora_dropout": [_fraction],
    "lora_target_modules": [list, tuple, str, None],
    "compile": ["boolean"],
}


def validate_params(estimator) -> None:
    """Raise ``InvalidParameterError`` (a ValueError and TypeError) naming any invalid hyperparameter."""
    params = estimator.get_params(deep=False)
    if "freeze_layers" in params:
        validate_freeze_layers(params["freeze_layers"], None)
    constraints = {name: PARAMETER_CONSTRAINTS[name] for name in params}
    validate_parameter_constraints(constraints, params, caller_name=type(estimator).__name__)
    head_hidden = params.get("head_hidden", ())
    if any(not isinstance(w, Integral) or w < 1 for w in head_hidden):
        raise ValueError(f"head_hidden must be a tuple of positive ints (hidden layer sizes), got {head_hidden!r}.")

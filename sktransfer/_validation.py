"""Declarative hyperparameter constraints, checked at ``fit`` (scikit-learn's validation helpers).

Each estimator class declares the constraints of the parameters it adds in a class attribute
``_parameter_constraints``; :func:`validate_params` merges them along the class hierarchy, so a
subclass that adds a parameter adds its constraint beside it (a parameter without one is not
checked). scikit-learn's private validation helpers come through :mod:`sktransfer._sklearn_compat`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np

from ._sklearn_compat import Interval, InvalidParameterError, StrOptions, validate_parameter_constraints

__all__ = ["Interval", "StrOptions", "check_device", "check_sample_weight", "fraction", "positive_int", "positive_real",
           "validate_params"]

positive_int = Interval(Integral, 1, None, closed="left")
positive_real = Interval(Real, 0, None, closed="neither")
fraction = Interval(Real, 0, 1, closed="left")

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def validate_params(estimator) -> None:
    """Raise ``InvalidParameterError`` (a ValueError and TypeError) naming any invalid hyperparameter."""
    constraints: dict = {}
    for klass in reversed(type(estimator).__mro__):
        constraints.update(vars(klass).get("_parameter_constraints", {}))
    params = estimator.get_params(deep=False)
    constraints = {name: rule for name, rule in constraints.items() if name in params}
    validate_parameter_constraints(constraints, params, caller_name=type(estimator).__name__)
    for name, rules in constraints.items():
        # scikit-learn's Interval(Integral, ...) accepts bools (bool subclasses int); True is no batch size.
        if isinstance(params[name], bool) and any(isinstance(r, Interval) and r.type is Integral for r in rules):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be an int, not a bool. "
                f"Got {params[name]!r} instead."
            )


def resolve_parameter_object(value: Any, spelled: Callable[[str], Any]) -> Any:
    """The object a strategy parameter (``adapter``, ``contrastive``) holds for a fit: None stays None, a short
    spelling (a str, already checked by the estimator's constraints) is ``spelled(value)``; its parameters are
    checked."""
    if value is None:
        return None
    value = spelled(value) if isinstance(value, str) else value
    validate_params(value)
    return value


def check_device(device: str) -> None:
    """Raise a ValueError listing the valid forms unless ``device`` is one of them."""
    if not _DEVICE.fullmatch(device):
        raise ValueError(
            f"device={device!r} is not a valid device: use 'auto' (CUDA when available, else CPU), 'cpu', "
            "'cuda' or 'cuda:N' (N the GPU's index)."
        )


def check_target_length(y, n: int) -> np.ndarray:
    """``y`` as an array of ``n`` targets (one per sample), or a clear error."""
    if y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None: fit needs targets, one per "
                         "sample.")
    raw = y.to_numpy() if hasattr(y, "to_numpy") else y
    y = np.asarray(raw)
    if y.ndim == 0:
        raise ValueError(
            f"y must be an array-like of {n} targets, one per sample; got a single {type(raw).__name__}."
        )
    if y.dtype.kind == "U" and y.ndim == 1 and any(isinstance(v, float) for v in raw):
        y = np.asarray(raw, dtype=object)  # NaN among str labels: keep it visible, not the string "nan"
    if len(y) != n:
        raise ValueError(f"X and y have different lengths: {n} inputs but {len(y)} targets.")
    return y


def check_finite_targets(y: np.ndarray) -> None:
    """Refuse numeric targets with NaN or infinite values, naming the fix."""
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ValueError("y has NaN or infinite values; drop or fill those rows.")


def check_sample_weight(sample_weight, n: int) -> np.ndarray | None:
    """``sample_weight`` as ``n`` float32 weights (None stays None), or a ValueError naming what is wrong."""
    if sample_weight is None:
        return None
    try:
        weights = np.asarray(sample_weight, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sample_weight must be {n} finite non-negative numbers; it could not be read as "
                         f"numbers ({err}).") from err
    if weights.shape != (n,) or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"sample_weight must be {n} finite non-negative numbers, got shape {weights.shape}.")
    if not weights.any():
        raise ValueError("sample_weight is zero for every sample: at least one weight must be positive.")
    return weights

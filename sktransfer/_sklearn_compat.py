"""The one module that imports scikit-learn's private helpers; the rest of sktransfer imports them from here.

scikit-learn may rename or move its private names in any release: a move then needs one edit, here.
"""

from sklearn.base import _clone_parametrized
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)

__all__ = ["Interval", "InvalidParameterError", "StrOptions", "_clone_parametrized", "validate_parameter_constraints"]

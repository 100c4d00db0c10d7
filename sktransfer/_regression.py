"""Regression targets: what makes an estimator a regressor (standardised targets, squared error, outputs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import RegressorMixin
from torch import nn

from ._net import TransferNetRegressor
from ._training import TrainableEstimator
from ._validation import check_finite_targets, check_target_length


@dataclass(repr=False, eq=False, kw_only=True)
class RegressorTask(RegressorMixin, TrainableEstimator):
    """Regression on one or several continuous targets, standardised inside and restored on output."""

    def _prepare_targets(self, y, n: int, classes=None) -> np.ndarray:
        y = check_target_length(y, n)
        if y.ndim > 2:
            raise ValueError(
                f"y must be 1-D (one target) or 2-D (n_samples, n_targets), got shape {y.shape}; "
                "reshape it, e.g. y.reshape(len(y), -1)."
            )
        if y.dtype.kind == "c":
            raise ValueError("y has complex values; a regressor needs real numbers (e.g. y.real and y.imag as two "
                             "targets).")
        try:
            y = y.astype(np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"A regressor needs numeric targets; y could not be read as numbers ({err}).") from err
        check_finite_targets(y)
        self.y_ndim_ = y.ndim
        y2 = y.reshape(n, -1)
        self.y_mean_ = y2.mean(axis=0)
        self.y_scale_ = np.where(y2.std(axis=0) > 0, y2.std(axis=0), 1.0).astype(np.float32)
        self.n_outputs_ = y2.shape[1]
        return ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32)

    def _check_same_targets(self, before: dict) -> None:
        """After ``_prepare_targets`` in a warm fit: as many targets as the fitted head predicts."""
        if self.n_outputs_ != before["n_outputs_"]:
            raise ValueError(
                f"warm_start=True needs the same number of targets as the previous fit ({before['n_outputs_']}), "
                f"got {self.n_outputs_}; set warm_start=False to start afresh."
            )

    def _stratify_targets(self, y_encoded):
        return None

    _net_class = TransferNetRegressor

    def _criterion(self):
        return nn.MSELoss(reduction="none")

    def _net_kwargs(self) -> dict:
        return {}

    def _export_output(self) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        return "identity", self.y_mean_, self.y_scale_

    def _solver_kind(self) -> str:
        return "regression"

    def predict(self, X) -> np.ndarray:
        """Predicted targets, on the scale of the ``y`` given to fit.

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, in any of the forms ``fit`` accepts.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            One value (or row of values, for a 2-D ``y`` in fit) per input.
        """
        out = self._outputs(X) * self.y_scale_ + self.y_mean_
        return out[:, 0] if self.y_ndim_ == 1 else out

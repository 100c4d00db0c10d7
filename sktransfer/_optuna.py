"""Optuna pruning inside a fit: each epoch's score reported to a trial, ``TrialPruned`` raised as its pruner says.

:class:`OptunaPruning` is a context manager, not an estimator parameter: a trial cannot be cloned, pickled or
saved with a model. Every net that a fit in its block builds (``_make_net``) gets one stateless skorch callback
that, at the end of each epoch, hands the net to the block's optuna-integration ``SkorchPruningCallback``. The
block is a ``ContextVar``: each thread (a study's ``n_jobs``) and each Dask worker task sees only its own trial.
"""

from __future__ import annotations

import warnings
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from skorch.callbacks import Callback

if TYPE_CHECKING:
    import optuna

_MONITORS = {"valid_loss": "minimize", "valid_acc": "maximize", "train_loss": "minimize"}
_ACTIVE: ContextVar[OptunaPruning | None] = ContextVar("sktransfer_optuna_pruning", default=None)


class OptunaPruning:
    """Report every epoch's score of the fits in a ``with`` block to an Optuna trial, and prune it.

    Inside ``with OptunaPruning(trial, monitor=...):`` each epoch that an estimator's ``fit`` trains
    reports the epoch's ``monitor`` to ``trial`` (step: the epoch's index
    from 0), then raises :class:`optuna.TrialPruned` out of ``fit`` when the study's pruner says so.
    It is meant for an objective function that fits one model per trial; optuna-integration's
    ``SkorchPruningCallback`` does the reporting. The block belongs to the thread (or Dask task) that
    entered it, so trials run in parallel each report only their own fits. Nothing of the trial stays
    on the fitted model. A fit that trains no epoch (a frozen backbone's head solved to convergence,
    ``C``) reports nothing: set ``C=None`` to train that head by epochs. Needs
    ``pip install sktransfer[optuna]``.

    Parameters
    ----------
    trial : optuna.trial.Trial
        The trial the scores are reported to.
    monitor : {"valid_loss", "valid_acc", "train_loss"}, default="valid_loss"
        The history entry reported. The validation scores are recorded only when the fit holds out
        a validation split (``early_stopping=True``, its ``validation_fraction``); ``"valid_acc"``
        only for single-label classifiers. Losses suit a study that minimizes, accuracy one that
        maximizes: the pruner compares the reported values in the study's direction.

    See Also
    --------
    PretrainedImageClassifier : Its ``early_stopping`` holds out the validation split scored at each
        epoch; its ``partial_fit`` trains one epoch per call (what ``OptunaSearchCV`` prunes with).

    Examples
    --------
    >>> import optuna
    >>> from sktransfer import OptunaPruning, PretrainedTextClassifier
    >>> def objective(trial):  # doctest: +SKIP
    ...     model = PretrainedTextClassifier(lr=trial.suggest_float("lr", 1e-5, 1e-2, log=True), C=None,
    ...                                      early_stopping=True, max_epochs=20)
    ...     with OptunaPruning(trial, monitor="valid_loss"):
    ...         model.fit(X_train, y_train)
    ...     return min(model.history_[:, "valid_loss"])
    >>> study = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner())
    >>> study.optimize(objective, n_trials=20)  # doctest: +SKIP
    """

    def __init__(self, trial: optuna.trial.Trial, monitor: str = "valid_loss") -> None:
        try:
            import optuna
            from optuna_integration.skorch import SkorchPruningCallback
        except ImportError as err:
            raise ImportError("OptunaPruning needs optuna and optuna-integration: pip install sktransfer[optuna]"
                              ) from err
        if not isinstance(trial, optuna.trial.Trial):
            raise TypeError(f"trial must be an optuna.trial.Trial (the objective function's argument), "
                            f"got {type(trial).__name__}.")
        if monitor not in _MONITORS:
            raise ValueError(f"monitor must be one of {sorted(_MONITORS)}, got {monitor!r}.")
        direction = trial.study.direction.name.lower()
        if direction != _MONITORS[monitor]:
            raise ValueError(
                f"monitor={monitor!r} improves as it {'de' if _MONITORS[monitor] == 'minimize' else 'in'}creases, "
                f"but the study {direction}s, so its pruner would stop the best trials: create the study with "
                f"direction={_MONITORS[monitor]!r}, or monitor a score that matches the study's direction."
            )
        self.trial = trial
        self.monitor = monitor
        self._callback = SkorchPruningCallback(trial, monitor)
        self._token: Token | None = None
        self.n_reported_ = 0

    def __enter__(self) -> OptunaPruning:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        _ACTIVE.reset(self._token)
        if exc_type is None and not self.n_reported_:
            warnings.warn(
                "OptunaPruning: no epoch was reported to the trial, as the fits in the block trained no epoch (a "
                "frozen backbone's linear head is solved to convergence): set C=None to train the head by epochs.",
                UserWarning, stacklevel=2,
            )

    def _report(self, net: Any) -> None:
        if self.monitor not in net.history[-1]:
            if self.n_reported_:  # refit_full's second training, which holds out no validation split
                return
            raise ValueError(
                f"OptunaPruning(monitor={self.monitor!r}): the fit records no {self.monitor!r}. Validation scores "
                "need a validation split: set early_stopping=True on the estimator (valid_acc: a single-label "
                "classifier), or monitor='train_loss'."
            )
        self.n_reported_ += 1
        self._callback.on_epoch_end(net)


class _ReportEpoch(Callback):
    """At each epoch's end, report to the innermost ``OptunaPruning`` block this thread is in."""

    def on_epoch_end(self, net, **kwargs) -> None:
        pruning = _ACTIVE.get()
        if pruning is not None:
            pruning._report(net)


def pruning_callbacks() -> list[tuple[str, Callback]]:
    """The skorch callbacks a net built now needs: one inside an :class:`OptunaPruning` block, else none."""
    return [] if _ACTIVE.get() is None else [("optuna_pruning", _ReportEpoch())]

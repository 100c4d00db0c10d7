"""Weight averaging (``weight_averaging``): skorch callbacks that average a fit's trainable weights.

The weights averaged are those the optimizer holds (what trains); at the end of training the average becomes
the module's weights, so it is what ``predict``, pickling and ``save`` use. The averages are torch's own
(``torch.optim.swa_utils``): an exponential moving average of every step ("ema"), the arithmetic mean of the
epochs' weights in the second half of training ("swa"), and the mean of the best ``SOUP_SIZE`` epochs' weights
("soup", AutoGluon's checkpoint averaging). Under early stopping "ema" and "swa" keep the average as it stood
at the best epoch, and "soup" ranks the epochs by the monitored validation score (without a validation split:
the last epochs). BatchNorm layers that update their running statistics (``freeze_bn_stats=False``) get them
recomputed for the averaged weights with ``update_bn``, one pass over the training batches.
"""

from __future__ import annotations

import math

import torch
from skorch.callbacks import Callback
from torch.optim.swa_utils import get_ema_multi_avg_fn, get_swa_multi_avg_fn, update_bn

SOUP_SIZE = 3  # AutoGluon averages its 3 best checkpoints
EMA_WINDOW = 0.1  # the moving average's window, 1 / (1 - decay) steps, as a share of the fit's steps


def ema_decay(steps: int) -> float:
    """The per-step decay whose window is ``EMA_WINDOW`` of the fit's ``steps`` (at least two steps)."""
    return 1.0 - 1.0 / max(2.0, EMA_WINDOW * steps)


def averaging_callback(kind: str | None, *, steps: int, epochs: int, monitor: str | None) -> Callback | None:
    """The callback of ``weight_averaging=kind`` for a fit of ``steps`` steps over ``epochs`` epochs, or None.

    ``monitor``: the validation score early stopping watches (None: no validation split).
    """
    if kind is None:
        return None
    if kind == "ema":
        return ExponentialAverage(ema_decay(steps))
    if kind == "swa":
        return EpochAverage(start=max(0, min(epochs // 2, epochs - 2)))  # the second half, at least two epochs
    return Soup(SOUP_SIZE, monitor=monitor)


class _WeightAverage(Callback):
    """Average the optimizer's parameters; at the end of training, load the average into them.

    Subclasses fill ``average_`` (a list of tensors matching ``params_``) as training goes.
    """

    def on_train_begin(self, net, **kwargs):
        self.params_ = list(dict.fromkeys(p for group in net.optimizer_.param_groups for p in group["params"]))
        self.average_, self.at_best_, self.n_averaged_ = None, None, 0

    def _clone(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params_]

    def on_epoch_end(self, net, **kwargs):
        stopper = dict(net.callbacks_).get("early_stopping")
        if stopper is not None and stopper.best_epoch_ == len(net.history) and self.average_ is not None:
            self.at_best_ = [t.clone() for t in self.average_]

    def _final(self, net) -> list[torch.Tensor] | None:
        """The averaged weights that become the model's: under early stopping, as they were at the best epoch."""
        return self.at_best_ if "early_stopping" in dict(net.callbacks_) else self.average_

    def on_train_end(self, net, X=None, y=None, **kwargs):
        final = self._final(net)
        if final is not None:
            with torch.no_grad():
                for param, value in zip(self.params_, final, strict=True):
                    param.copy_(value)
            _recompute_batchnorm(net, X, y)
        self.params_, self.average_, self.at_best_ = None, None, None  # the fitted net keeps no copies


class ExponentialAverage(_WeightAverage):
    """Exponential moving average of the weights after every training step, starting from the initial ones."""

    def __init__(self, decay: float):
        self.decay = decay

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        self.average_ = self._clone()

    def on_batch_end(self, net, training=True, **kwargs):
        if training:
            get_ema_multi_avg_fn(self.decay)(self.average_, [p.detach() for p in self.params_], self.n_averaged_)
            self.n_averaged_ += 1


class EpochAverage(_WeightAverage):
    """Stochastic weight averaging: the arithmetic mean of the weights at the end of each epoch after ``start``."""

    def __init__(self, start: int):
        self.start = start

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) > self.start:
            if self.average_ is None:
                self.average_ = self._clone()
            else:
                get_swa_multi_avg_fn()(self.average_, [p.detach() for p in self.params_], self.n_averaged_)
            self.n_averaged_ += 1
        super().on_epoch_end(net, **kwargs)


class Soup(_WeightAverage):
    """The mean of the weights of the ``size`` best epochs by ``monitor`` (None: of the last ``size`` epochs)."""

    def __init__(self, size: int, monitor: str | None):
        self.size = size
        self.monitor = monitor

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        self.kept_ = []  # (rank, epoch, weights), the best first

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if self.monitor is None:
            rank = -epoch
        else:
            score = float(net.history[-1, self.monitor])
            rank = score if self.monitor.endswith("loss") else -score
            rank = math.inf if math.isnan(rank) else rank
        if len(self.kept_) < self.size or rank < self.kept_[-1][0]:
            self.kept_ = sorted([*self.kept_, (rank, epoch, self._clone())], key=lambda kept: kept[:2])[:self.size]

    def _final(self, net) -> list[torch.Tensor] | None:
        if not self.kept_:
            return None
        average = [t.clone() for t in self.kept_[0][2]]
        for n, (_, _, weights) in enumerate(self.kept_[1:], start=1):
            get_swa_multi_avg_fn()(average, weights, n)
        return average

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.soup_epochs_ = sorted(epoch for _, epoch, _ in self.kept_)
        super().on_train_end(net, X=X, y=y, **kwargs)
        self.kept_ = []


class _Forward(torch.nn.Module):
    """What ``update_bn`` runs: the net's forward pass on a batch dict; only ``norms`` are its modules (reset)."""

    def __init__(self, net, norms: list[torch.nn.Module]):
        super().__init__()
        self.norms = torch.nn.ModuleList(norms)
        self.__dict__["net"] = net

    def forward(self, batch):
        return self.net.infer(batch)


def _recompute_batchnorm(net, X, y) -> None:
    """Recompute, for the averaged weights, the running statistics of the BatchNorm layers that training updates."""
    module = net.module_
    module.train()
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    module.eval()
    if norms and X is not None:
        batches = (batch for batch, _ in net.get_iterator(net.get_dataset(X, y), training=True))
        update_bn(batches, _Forward(net, norms).eval())

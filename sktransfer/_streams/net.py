"""The nets' side of the training streams: their modules, and their loss terms added to the task's loss."""

from __future__ import annotations

import math

import torch
from skorch.utils import to_tensor

from .._plan import SAMPLE_WEIGHT
from .base import SAMPLE_DOMAIN, StreamBatch


def _head(net):
    return getattr(net.module_, "_orig_mod", net.module_).head


class StreamLossMixin:
    """``get_loss`` of a training batch: the task loss of its labelled rows, times each stream's ``task_weight``,
    plus each stream's ``weight`` times its term. Validation batches (labelled rows only) keep the task loss."""

    def __init__(self, *args, streams=(), total_steps=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.streams = tuple(streams)
        self.total_steps = total_steps

    def _stream_modules(self, index: int) -> dict[str, torch.nn.Module]:
        names = getattr(self, "_stream_module_names", ())
        return {name: getattr(self, f"{name}_") for name in (names[index] if index < len(names) else ())}

    def initialize_module(self):
        super().initialize_module()
        names = []
        for stream in self.streams:
            modules = stream.modules(_head(self).layers[-1].in_features)
            for name, module in modules.items():
                setattr(self, f"{name}_", module.to(self.device))  # skorch registers it: train/eval mode, device
            names.append(tuple(modules))
        self._stream_module_names = tuple(names)
        return self

    def initialize_optimizer(self, triggered_directly=None):
        super().initialize_optimizer(triggered_directly)
        options = self.group_options or {}
        for index, stream in enumerate(self.streams):
            for module in self._stream_modules(index).values():
                for group in stream.module_groups(module, options.get("head_lr") or self.lr,
                                                  options.get("weight_decay", 0.0)):
                    self.optimizer_.add_param_group(group)
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.steps_done_ = 0
        self._features = None
        if self.streams:
            # The features are the input of the dropout before the head's last linear layer.
            self._hook = _head(self).layers[-2].register_forward_pre_hook(self._keep_features)

    def _keep_features(self, module, args):
        self._features = args[0]

    def fit(self, X, y=None, **fit_params):
        try:
            return super().fit(X, y, **fit_params)
        finally:
            if getattr(self, "_hook", None) is not None:
                self._hook.remove()
            self._hook = self._features = None
            for index in range(len(self.streams)):
                for module in self._stream_modules(index).values():
                    module.zero_grad(set_to_none=True)

    def train_step(self, batch, **fit_params):
        result = super().train_step(batch, **fit_params)
        self.steps_done_ += 1
        return result

    def infer(self, x, **fit_params):
        if isinstance(x, dict):
            keys = {SAMPLE_DOMAIN, *(stream.key for stream in self.streams)}
            x = {k: v for k, v in x.items() if k not in keys}
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if not (training and self.streams and isinstance(X, dict) and SAMPLE_DOMAIN in X):
            return super().get_loss(y_pred, y_true, X=X, training=training)
        device = y_pred.device
        labelled = to_tensor(X[SAMPLE_DOMAIN], device=device) >= 0
        weights = X.get(SAMPLE_WEIGHT)
        weights = None if weights is None else to_tensor(weights, device=device)
        targets = to_tensor(y_true, device=device)
        if bool(labelled.any()):
            task = super().get_loss(y_pred[labelled], targets[labelled],
                                    X=None if weights is None else {SAMPLE_WEIGHT: weights[labelled]},
                                    training=training)
        else:
            task = y_pred.sum() * 0.0
        batches = [StreamBatch(outputs=y_pred, targets=targets, features=self._features, labelled=labelled,
                               data=None if stream.key is None else to_tensor(X[stream.key], device=device),
                               weights=weights, progress=self.steps_done_ / self.total_steps,
                               modules=self._stream_modules(index)) for index, stream in enumerate(self.streams)]
        loss = task * math.prod(stream.task_weight(batch) for stream, batch in zip(self.streams, batches))
        for stream, batch in zip(self.streams, batches):
            loss = loss + stream.weight * stream.loss(batch)
        return loss

"""The skorch nets that train a :class:`~sktransfer._heads.TransferModule`.

One mixin adds to skorch what transfer learning needs: parameter groups built from the backbone's
blocks, autocast (bf16/fp16 with a gradient scaler), micro-batches that accumulate gradients (and
halve on CUDA out-of-memory), per-sample weights carried in the batch under ``SAMPLE_WEIGHT``, and memory
hygiene: after ``fit`` only the trained module stays on the device (no gradients, optimizer moments,
early-stopping snapshot or compiled wrapper). Each task has one net; :class:`StreamLossMixin` adds the
training streams' loss terms (see :mod:`sktransfer._streams`).
"""

from __future__ import annotations

import math
import warnings

import torch
from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator, to_tensor

from ._device import release_cuda_cache
from ._optim import make_optimizer, param_groups
from ._plan import SAMPLE_WEIGHT
from ._streams.net import StreamLossMixin

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _chunks(X, y, k: int):
    size = math.ceil(len(y) / k)
    for start in range(0, len(y), size):
        part = slice(start, start + size)
        yield ({key: v[part] for key, v in X.items()} if isinstance(X, dict) else X[part]), y[part]


class _TransferNetMixin:
    def __init__(self, *args, blocks=None, optimizer_name="adamw", group_options=None,
                 precision="fp32", grad_accum_steps=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.blocks = blocks
        self.optimizer_name = optimizer_name
        self.group_options = group_options
        self.precision = precision
        self.grad_accum_steps = grad_accum_steps

    def initialize(self):
        super().initialize()
        # skorch unpickles with a CPU fallback only the attributes named here (module_, criterion_, optimizer_); the
        # module and criterion passed as instances are those very objects, and the streams, the grad scaler and the
        # loader's generator hold tensors too: without them a model fitted on CUDA cannot be unpickled without one
        extra = ["module", "criterion", "streams", "scaler_", "iterator_valid__generator"]
        self.cuda_dependent_attributes_ = list(dict.fromkeys([*self.cuda_dependent_attributes_, *extra]))
        return self

    def initialize_optimizer(self, triggered_directly=None):
        module = getattr(self.module_, "_orig_mod", self.module_)  # named as the blocks are, even when compiled
        groups = param_groups(module, self.blocks or [], lr=self.lr, **(self.group_options or {}))
        self.optimizer_ = make_optimizer(self.optimizer_name, groups, self.lr)
        self.scaler_ = torch.amp.GradScaler(torch.device(self.device).type, enabled=self.precision == "fp16")
        return self

    def infer(self, x, **fit_params):
        dtype = _AMP_DTYPES.get(self.precision)
        with torch.autocast(torch.device(self.device).type, dtype=dtype, enabled=dtype is not None):
            return super().infer(x, **fit_params).float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=y_pred.device)
        loss = self.criterion_(y_pred, y_true)
        if loss.ndim > 1:
            loss = loss.flatten(1).mean(1)
        weight = X.get(SAMPLE_WEIGHT) if isinstance(X, dict) else None
        if weight is not None:
            loss = loss * to_tensor(weight, device=loss.device)
        return loss.mean()

    def _accumulated_step(self, batch, **fit_params):
        Xi, yi = unpack_data(batch)
        self.optimizer_.zero_grad(set_to_none=True)
        losses, preds = [], []
        for xs, ys in _chunks(Xi, yi, self.grad_accum_steps):
            y_pred = self.infer(xs, **fit_params)
            loss = self.get_loss(y_pred, ys, X=xs, training=True) * (len(ys) / len(yi))
            self.scaler_.scale(loss).backward()
            losses.append(loss.detach())
            preds.append(y_pred.detach())
        self.notify("on_grad_computed", named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch, training=True)
        self.scaler_.step(self.optimizer_)
        self.scaler_.update()
        return {"loss": torch.stack(losses).sum(), "y_pred": torch.cat(preds)}

    def train_step(self, batch, **fit_params):
        self._set_training(True)
        while True:
            try:
                return self._accumulated_step(batch, **fit_params)
            except torch.OutOfMemoryError:
                if self.grad_accum_steps >= len(unpack_data(batch)[1]):
                    raise
            # Outside the except block, so that the tensors its traceback held are freed first.
            self._halve_micro_batches(len(unpack_data(batch)[1]))

    def _halve_micro_batches(self, batch_len: int) -> None:
        self.optimizer_.zero_grad(set_to_none=True)
        release_cuda_cache(str(self.device))
        self.grad_accum_steps *= 2
        warnings.warn(
            f"Out of memory: retrying with micro-batches of about {math.ceil(batch_len / self.grad_accum_steps)} "
            f"samples and {self.grad_accum_steps} gradient-accumulation steps (same effective batch size). "
            "Lower batch_size or raise grad_accum_steps to avoid the retry.",
            RuntimeWarning,
            stacklevel=3,
        )

    def fit(self, X, y=None, **fit_params):
        super().fit(X, y, **fit_params)
        self._release_training_state()
        return self

    def _release_training_state(self) -> None:
        """Keep only the trained module: the next fit builds a new net and optimizer anyway."""
        self.module_ = getattr(self.module_, "_orig_mod", self.module_)  # compiled for training only
        self.criterion_ = getattr(self.criterion_, "_orig_mod", self.criterion_)
        self.module_.zero_grad(set_to_none=True)
        self.optimizer_.state.clear()
        for _, callback in self.callbacks_:
            if getattr(callback, "best_model_weights_", None) is not None:
                callback.best_model_weights_ = None  # early stopping's snapshot, already loaded back
            if getattr(callback, "lr_scheduler_", None) is not None:
                callback.lr_scheduler_ = None  # it holds the optimizer, and through it every trained parameter
        release_cuda_cache(str(self.device))


class TransferNetClassifier(StreamLossMixin, _TransferNetMixin, NeuralNetClassifier):
    """skorch classifier net used by the sktransfer classifiers."""


class TransferNetRegressor(StreamLossMixin, _TransferNetMixin, NeuralNetRegressor):
    """skorch regressor net used by the sktransfer regressors."""


class TransferNet(StreamLossMixin, _TransferNetMixin, NeuralNet):
    """skorch net used for multi-label targets."""

"""Fine-tuning: what the image and text classifiers and regressors share, built once on skorch."""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import Dataset as SkorchDataset
from skorch.helper import predefined_split
from torch.utils.data import default_collate

from ._adapters import attach_adapter
from ._cache import feature_cache
from ._callbacks import GradualUnfreezing, LRLogger
from ._device import cuda_indices, resolve_device
from ._embedding import BackboneEstimator
from ._freezing import apply_freeze, frozen_names, n_frozen_blocks, validate_freeze_layers
from ._heads import Head, TransferModule
from ._optim import ScheduleFactor
from ._persistence import PersistenceMixin
from ._plotting import plot_history
from ._prefix import PrefixSplit, split_frozen_prefix

_STANDARDIZATION_SAMPLE = 64  # embedded (and cached) before fine-tuning to fit the head standardisation


@dataclass(repr=False, eq=False)
class TrainableEstimator(PersistenceMixin, BackboneEstimator):
    """Base of the estimators that train a head (and optionally the backbone) with skorch.

    Task subclasses provide ``_net_class``, ``_prepare_targets``, ``_criterion``, ``_net_kwargs``,
    ``_stratify_targets`` and ``_check_predict_targets``.
    """

    freeze_layers: Any = "all"
    lr: float = 1e-3
    max_epochs: int = 10
    weight_decay: float = 0.01
    dropout: float = 0.0
    head_hidden: tuple = ()
    optimizer: str = "adamw"
    lr_schedule: str = "constant"
    warmup: float = 0.0
    layer_decay: float | None = None
    head_lr: float | None = None
    unfreeze_every: int | None = None
    freeze_bn_stats: bool = True
    early_stopping: bool = False
    validation_fraction: float = 0.1
    patience: int = 5
    monitor: str = "valid_loss"
    refit_full: bool = False
    grad_accum_steps: int = 1
    warm_start: bool = False
    random_state: Any = None
    adapter: str | None = None
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    lora_target_modules: Any = None
    compile: bool = False

    def _augment(self):
        return None

    # ---------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None) -> TrainableEstimator:
        """Fine-tune the backbone (as ``freeze_layers`` allows) and train a new head on ``(X, y)``.

        Parameters
        ----------
        X : sequence of inputs
            Images or texts (see the class docstring for the accepted forms).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the training loss.

        Returns
        -------
        self
        """
        warm = self.warm_start and hasattr(self, "net_")
        self.__dict__.pop("validation_history_", None)
        if not (self.early_stopping and self.refit_full):
            return self._fit(X, y, sample_weight, warm=warm)
        start = copy.deepcopy(self.net_.module_) if warm else None
        self._fit(X, y, sample_weight, warm=warm)
        validation_history = self.history_
        if start is not None:
            self.net_.module_ = start
        self._fit(X, y, sample_weight, warm=warm, epochs=self.best_epoch_, validate=False)
        self.validation_history_ = validation_history
        return self

    def _fit(self, X, y, sample_weight=None, *, warm: bool, classes=None, epochs: int | None = None,
             validate: bool = True):
        self._validate()
        items = self._check_inputs(X)
        y_encoded = self._prepare_targets(y, len(items), classes)
        weights = self._sample_weights(y_encoded, sample_weight, len(items))
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if not warm:
            self.__dict__.pop("net_", None)  # free the previous model's device memory before building the next
        device = self.device_ if warm else resolve_device(self.device)
        with torch.random.fork_rng(devices=cuda_indices(device)):
            torch.manual_seed(seed)
            module, blocks = self._reuse_module() if warm else self._build_module()
            if not warm:
                self.backbone_seed_ = seed
            blocks = self._freeze(module, blocks)
            train_idx, valid_idx = self._split(y_encoded, seed, validate)
            prefix = self._prefix_split(module.encoder, items)
            precomputed = self.features_cached_ or prefix is not None
            features = self._embed(items, module.encoder, prefix=prefix) if precomputed else None
            if not warm:
                self._fit_standardization(module, items, None if prefix else features, train_idx)
            key = "features" if prefix is None else "frozen_prefix"
            train_data = self._training_data(items, features, key, y_encoded, weights, train_idx, train=True)
            valid_data = None if valid_idx is None else self._training_data(
                items, features, key, y_encoded, weights, valid_idx)
            sampler = None if precomputed else self._train_sampler([items[i] for i in train_idx])
            net = self._make_net(module, blocks, len(train_idx), valid_data, epochs, sampler)
            module.use_suffix(None if prefix is None else prefix.suffix)
            try:
                net.fit(train_data, y_encoded[train_idx])
            finally:
                module.use_suffix(None)
                net.iterator_train__sampler = None  # its per-item lengths are not part of the model
        # Left in eval mode, so that predictions (from any thread) never toggle train/eval.
        net.module_.eval()
        self.net_ = net
        self.history_ = net.history
        self.n_epochs_ = len(net.history)
        self.best_epoch_ = self._best_epoch()
        if not self.features_cached_:
            self.backbone_identity_ += f":tuned:{uuid.uuid4().hex}"
        return self

    def _build_module(self):
        backbone = self._setup_backbone()
        head = Head(backbone.num_features, self.n_outputs_, tuple(self.head_hidden), self.dropout)
        self.blocks_ = backbone.blocks
        return TransferModule(backbone.encoder, head, self.freeze_bn_stats).to(self.device_), backbone.blocks

    def _reuse_module(self):
        module = self.net_.module_
        if module.head.layers[-1].out_features != self.n_outputs_:
            raise ValueError(
                f"warm_start=True needs the same outputs as the previous fit ({module.head.layers[-1].out_features}), "
                f"got {self.n_outputs_}; pass classes=... to partial_fit or set warm_start=False."
            )
        return module, self.blocks_

    def _freeze(self, module: TransferModule, blocks: list[list[str]]) -> list[list[str]]:
        """Set what trains; return the blocks (renamed when an adapter was added)."""
        validate_freeze_layers(self.freeze_layers, len(blocks))
        if self.adapter is not None:
            self.blocks_ = blocks = attach_adapter(self, module.encoder, blocks)
            self.features_cached_ = False
            return blocks
        names = [name for name, _ in module.encoder.named_parameters()]
        frozen = frozen_names(blocks, self.freeze_layers, names)
        self.n_trainable_backbone_params_ = apply_freeze(module.encoder, frozen)
        self.features_cached_ = bool(
            self.cache and len(frozen) == len(names) and self.unfreeze_every is None
            and self._augment() is None and ":tuned:" not in self.backbone_identity_
        )
        return blocks

    def _prefix_split(self, encoder: torch.nn.Module, items: list) -> PrefixSplit | None:
        """Where the frozen prefix of a partly frozen image backbone can be run once and cached, its split."""
        self.prefix_cached_ = False
        if (self.features_cached_ or not self.cache or self._is_text or self.adapter is not None
                or self.unfreeze_every is not None or self._augment() is not None):
            return None
        dataset = self._make_dataset(items[:2])
        sample, _ = (self._collate_fn() or default_collate)([dataset[i] for i in range(len(dataset))])
        split = split_frozen_prefix(encoder, {k: v.to(self.device_) for k, v in sample.items()})
        if split is None or split.item_nbytes * len(items) > feature_cache.max_bytes:
            return None
        self.prefix_cached_ = True
        return split

    def _split(self, y_encoded: np.ndarray, seed: int, validate: bool):
        indices = np.arange(len(y_encoded))
        if not (self.early_stopping and validate):
            return indices, None
        stratify = self._stratify_targets(y_encoded)
        try:
            return train_test_split(indices, test_size=self.validation_fraction, random_state=seed, stratify=stratify)
        except ValueError:
            return train_test_split(indices, test_size=self.validation_fraction, random_state=seed)

    def _sample_weights(self, y_encoded, sample_weight, n: int):
        if sample_weight is None:
            return None
        weights = np.asarray(sample_weight, dtype=np.float32)
        if weights.shape != (n,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"sample_weight must be {n} finite non-negative numbers, got shape {weights.shape}.")
        return weights

    def _fit_standardization(self, module, items, features, train_idx) -> None:
        # A frozen backbone: every training embedding (cached, or one extra pass with cache=False), so cache
        # on and off train the same head. A trainable one: a seeded sample of pretrained embeddings (cached).
        sample = train_idx
        if self.n_trainable_backbone_params_:
            size = min(len(train_idx), _STANDARDIZATION_SAMPLE)
            sample = np.sort(np.random.default_rng(0).choice(train_idx, size=size, replace=False))
        if features is None:
            # The backbone is still the pretrained one here, so its cached embeddings are valid.
            features = self._embed([items[i] for i in sample], module.encoder)
        else:
            features = features[sample]
        module.head.fit_standardization(torch.as_tensor(features, device=self.device_))

    def _training_data(self, items, features, key: str, y, weights, idx, train: bool = False):
        w = None if weights is None else weights[idx]
        if features is not None:
            x = {key: features[idx]}
            if w is not None:
                x["sample_weight"] = w
            return SkorchDataset(x, y[idx])
        return self._make_dataset([items[i] for i in idx], y[idx], w, augment=self._augment() if train else None)

    def _make_net(self, module, blocks, n_train: int, valid_data, epochs: int | None = None, sampler=None):
        callbacks = [("lr_log", LRLogger())]
        epochs = epochs or self.max_epochs
        steps = epochs * math.ceil(n_train / self.batch_size)
        if self.lr_schedule != "constant" or self.warmup:
            schedule = ScheduleFactor(self.lr_schedule, steps, self.warmup)
            callbacks.append(("lr_schedule", LRScheduler(torch.optim.lr_scheduler.LambdaLR, lr_lambda=schedule, step_every="batch")))
        if valid_data is not None:
            callbacks.append(("early_stopping", EarlyStopping(
                monitor=self.monitor, patience=self.patience, lower_is_better=self.monitor.endswith("loss"),
                load_best=True,
            )))
        if self.unfreeze_every is not None:
            n_frozen = n_frozen_blocks(self.freeze_layers, len(blocks)) or 0
            callbacks.append(("unfreeze", GradualUnfreezing(blocks, n_frozen, self.unfreeze_every)))
        if self.verbose:
            callbacks.append(("progress", ProgressBar()))
        precomputed = self.features_cached_ or self.prefix_cached_
        collate = None if precomputed else self._collate_fn()
        workers = 0 if precomputed else self.num_workers_
        iterator = {"num_workers": workers, "pin_memory": self.device_.startswith("cuda")}
        if collate is not None:
            iterator["collate_fn"] = collate
        return self._net_class(
            module=module,
            criterion=self._criterion(),
            lr=self.lr,
            max_epochs=epochs,
            batch_size=self.batch_size,
            train_split=predefined_split(valid_data) if valid_data is not None else None,
            callbacks=callbacks,
            device=self.device_,
            verbose=self.verbose,
            iterator_train__shuffle=sampler is None,
            iterator_train__sampler=sampler,
            **{f"iterator_train__{k}": v for k, v in iterator.items()},
            **{f"iterator_valid__{k}": v for k, v in iterator.items()},
            blocks=blocks,
            optimizer_name=self.optimizer,
            group_options={
                "weight_decay": self.weight_decay,
                "layer_decay": self.layer_decay,
                "head_lr": self.head_lr,
                "include_frozen": self.unfreeze_every is not None,
            },
            precision=self.precision_,
            grad_accum_steps=self.grad_accum_steps,
            warm_start=False,
            compile=self.compile,
            **self._net_kwargs(),
        )

    def _best_epoch(self) -> int:
        # The epoch whose weights EarlyStopping(load_best=True) restored.
        stopper = dict(self.net_.callbacks_).get("early_stopping")
        return self.n_epochs_ if stopper is None else int(stopper.best_epoch_)

    def plot_history(self):
        """Plot the training history: loss, accuracy (if recorded) and learning rate per epoch.

        Needs matplotlib (``pip install sktransfer[plot]``). The best epoch (the one whose weights
        early stopping restored, else the last) is marked.

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        check_is_fitted(self)
        return plot_history(self.history_, self.best_epoch_)

    # ------------------------------------------------------------ predict
    def _fitted_encoder(self) -> torch.nn.Module:
        return self.net_.module_.encoder

    def _frozen_for_cache(self) -> bool:
        return self.features_cached_

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_")

    def _outputs(self, X) -> np.ndarray:
        """The net's outputs (after its nonlinearity) for ``X``, in input order."""
        check_is_fitted(self)
        items = self._check_inputs(X)
        if self.features_cached_:
            features = self._embed(items, self._fitted_encoder())
            return self.net_.predict_proba({"features": features})
        order = self._inference_order(items)
        outputs = self.net_.predict_proba(self._make_dataset([items[i] for i in order]))
        result = np.empty_like(outputs)
        result[order] = outputs
        return result

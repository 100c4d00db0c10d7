"""Fine-tuning: what the image and text classifiers and regressors share, built once on skorch."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from skorch.helper import predefined_split
from skorch.history import History
from torch.utils.data import default_collate

from ._adapters import AdapterOptions, attach_adapter, restore_adapter
from ._cache import feature_cache
from ._callbacks import GradualUnfreezing, LRLogger
from ._converged_head import solve_head
from ._device import cuda_indices, resolve_device
from ._domain import split_domains
from ._embedding import BackboneEstimator
from ._export import ExportMixin
from ._freezing import apply_freeze, frozen_names, n_frozen_blocks, validate_freeze_layers
from ._heads import Head, TransferModule
from ._optim import HEAD_LR, Rates, ScheduleFactor, resolve_rates
from ._plan import FitPlan, Stage, Trainable, precomputed_dataset
from ._plotting import plot_history
from ._prefix import PrefixSplit, split_frozen_prefix
from ._validation import Interval, StrOptions, fraction, positive_int, positive_real

# What _prepare_targets sets: restored when a warm fit fails on its targets.
_TARGET_ATTRIBUTES = ("classes_", "multilabel_", "n_outputs_", "y_mean_", "y_scale_", "y_ndim_")
_STANDARDIZATION_SAMPLE = 64  # embedded (and cached) before fine-tuning to fit the head standardisation


@dataclass(repr=False, eq=False, kw_only=True)
class TrainableEstimator(ExportMixin, BackboneEstimator):
    """Base of the estimators that train a head (and optionally the backbone) with skorch.

    Task subclasses provide ``_net_class``, ``_prepare_targets``, ``_criterion``, ``_net_kwargs``,
    ``_stratify_targets`` and ``_check_predict_targets``.
    """

    freeze_layers: Any = "all"
    lr: float | str = "auto"
    max_epochs: int = 10
    weight_decay: float = 0.01
    dropout: float = 0.0
    head_hidden: tuple = ()
    C: float | str | None = 0.01
    optimizer: str = "adamw"
    lr_schedule: str = "constant"
    warmup: float | str = "auto"
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

    _parameter_constraints = {
        "freeze_layers": [StrOptions({"all", "none"}), Integral, list, tuple],
        "lr": [positive_real, StrOptions({"auto"})],
        "max_epochs": [positive_int],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "dropout": [fraction],
        "head_hidden": [tuple, list],
        "C": [positive_real, StrOptions({"cv"}), None],
        "optimizer": [StrOptions({"adamw", "adam", "sgd"})],
        "lr_schedule": [StrOptions({"constant", "cosine", "linear", "onecycle"})],
        "warmup": [fraction, StrOptions({"auto"})],
        "layer_decay": [Interval(Real, 0, 1, closed="right"), None],
        "head_lr": [positive_real, None],
        "unfreeze_every": [positive_int, None],
        "freeze_bn_stats": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "patience": [positive_int],
        "monitor": [StrOptions({"valid_loss", "valid_acc"})],
        "refit_full": ["boolean"],
        "grad_accum_steps": [positive_int],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "adapter": [StrOptions({"lora"}), None],
        "lora_r": [positive_int],
        "lora_alpha": [positive_real],
        "lora_dropout": [fraction],
        "lora_target_modules": [list, tuple, str, None],
        "compile": ["boolean"],
    }

    def _validate(self) -> None:
        validate_freeze_layers(self.freeze_layers, None)
        super()._validate()
        if any(not isinstance(w, Integral) or isinstance(w, bool) or w < 1 for w in self.head_hidden):
            raise ValueError(
                f"head_hidden must be a tuple of positive ints (hidden layer sizes), got {self.head_hidden!r}."
            )
        if self.adapter is not None and self.unfreeze_every is not None:
            raise ValueError(
                "adapter='lora' and unfreeze_every cannot be combined: an adapter never trains the backbone's "
                "own weights. Set unfreeze_every=None, or adapter=None for gradual unfreezing."
            )

    def _augment(self):
        return None

    # ---------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None, sample_domain=None) -> TrainableEstimator:
        """Fine-tune the backbone (as ``freeze_layers`` allows) and train a new head on ``(X, y)``.

        Parameters
        ----------
        X : sequence of inputs
            Images or texts (see the class docstring for the accepted forms).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the training loss.
        sample_domain : array-like of shape (n_samples,), default=None
            Domain of each row, as in skada: ``>= 0`` labelled source rows, ``< 0`` unlabelled target
            rows (their labels masked: -1, or None for string labels). Classifiers adapt to the target
            rows with ``domain_adaptation`` and leave them out without it; regressors refuse them.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        warm = self.warm_start and hasattr(self, "net_")
        self.__dict__.pop("validation_history_", None)
        if not (self.early_stopping and self.refit_full):
            return self._fit(X, y, sample_weight, warm=warm, sample_domain=sample_domain)
        start = copy.deepcopy(self.net_.module_) if warm else None
        self._fit(X, y, sample_weight, warm=warm, sample_domain=sample_domain)
        validation_history = self.history_
        if start is not None:
            self.net_.module_ = start
        self._fit(X, y, sample_weight, warm=warm, epochs=self.best_epoch_, validate=False, sample_domain=sample_domain)
        self.validation_history_ = validation_history
        return self

    def _fit(self, X, y, sample_weight=None, *, warm: bool, classes=None, epochs: int | None = None,
             validate: bool = True, incremental: bool = False, sample_domain=None):
        self._validate()
        items = self._check_inputs(X)
        items, y, sample_weight, target = self._split_domains(items, y, sample_weight, sample_domain)
        before = {k: v for k, v in vars(self).items() if k in _TARGET_ATTRIBUTES} if warm else {}
        try:
            y_encoded = self._prepare_targets(y, len(items), classes)
            if warm:
                self._check_same_targets(before)
        except Exception:
            self.__dict__.update(before)  # a failed warm fit leaves the fitted model as it was
            raise
        if self.early_stopping and validate and self.monitor == "valid_acc" and not issubclass(
                self._net_class, NeuralNetClassifier):
            raise ValueError(
                "monitor='valid_acc' needs single-label classification: accuracy is not recorded for "
                f"{'multi-label' if getattr(self, 'multilabel_', False) else 'regression'} targets. "
                "Use monitor='valid_loss'."
            )
        weights = self._sample_weights(y_encoded, sample_weight, len(items))
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if not warm:
            self.__dict__.pop("net_", None)  # free the previous model's device memory before building the next
        device = self.device_ if warm else resolve_device(self.device)
        with torch.random.fork_rng(devices=cuda_indices(device)):
            torch.manual_seed(seed)
            plan = self._plan_fit(items, y_encoded, weights, warm=warm, seed=seed, epochs=epochs, validate=validate,
                                  incremental=incremental, target=target)
            net = self._make_net(plan)
            plan.module.use_suffix(plan.suffix)
            try:
                if plan.head_solver is None:
                    net.fit(plan.train_data, plan.train_data.y)
                    self.C_ = None
                else:
                    self.C_ = solve_head(net, plan, kind=plan.head_solver, C=self.C, seed=seed)
            finally:
                plan.module.use_suffix(None)
                net.iterator_train__sampler = None  # its per-item lengths are not part of the model
        # Left in eval mode, so that predictions (from any thread) never toggle train/eval.
        net.module_.eval()
        self.net_ = net
        self.history_ = net.history
        self.n_epochs_ = len(net.history)
        self.best_epoch_ = 1 if plan.head_solver else self._best_epoch()
        return self

    def _plan_fit(self, items: list, y: np.ndarray, weights: np.ndarray | None, *, warm: bool, seed: int,
                  epochs: int | None, validate: bool, incremental: bool, target: list | None = None) -> FitPlan:
        """Decide, in order, everything this fit trains with; record the fitted attributes it defines."""
        if warm:
            module, blocks = self._reuse_module()
        else:
            module, blocks = self._build_module()
            self.backbone_seed_ = seed
            self.backbone_tuned_ = False
        trainable = self._trainable(module.encoder, blocks)
        self.blocks_ = trainable.blocks
        self.n_trainable_backbone_params_ = trainable.n_params
        if trainable.lora_targets is not None:
            self.lora_target_modules_ = trainable.lora_targets
        rates = resolve_rates(self.lr, self.head_lr, self.warmup, module.encoder, adapter=self.adapter is not None,
                              backbone_trains=not trainable.backbone_frozen or self.unfreeze_every is not None)
        self.lr_ = {"head": rates.head, "backbone": rates.backbone if rates.family or self.lr != "auto" else None,
                    "warmup": rates.warmup}
        stage, prefix = self._stage(module.encoder, trainable, items)
        self.features_cached_ = stage is Stage.EMBEDDINGS
        self.prefix_cached_ = stage is Stage.FROZEN_PREFIX
        self.backbone_tuned_ = self.backbone_tuned_ or not trainable.backbone_frozen
        train_idx, valid_idx = self._split(y, seed, validate)
        values = self._embed(items, module.encoder, prefix=prefix) if stage.precomputed else None
        if not warm:
            self._fit_standardization(module, items, values if stage is Stage.EMBEDDINGS else None, train_idx,
                                      trainable)
        epochs = epochs or self.max_epochs
        train_data = self._dataset(stage, items, values, y, weights, train_idx, train=True)
        valid_data = None if valid_idx is None else self._dataset(stage, items, values, y, weights, valid_idx)
        raw = stage is Stage.RAW
        plan = FitPlan(
            module=module,
            blocks=trainable.blocks,
            stage=stage,
            rates=rates,
            prefix=prefix,
            epochs=epochs,
            n_train=len(train_idx),
            train_data=train_data,
            valid_data=valid_data,
            sampler=self._train_sampler([items[i] for i in train_idx]) if raw else None,
            collate=self._collate_fn() if raw else None,
            num_workers=self.num_workers_ if raw else 0,
            callbacks=self._callbacks(trainable.blocks, len(train_idx), epochs, rates.warmup, valid_data is not None),
            head_solver=self._head_solver(stage, incremental, target is None),
        )
        # Unlabelled target-domain rows (domain adaptation, see _domain.py): their dataset and mixed batches.
        return plan if target is None else self._add_target_stream(plan, target, weighted=weights is not None)

    def _head_solver(self, stage: Stage, incremental: bool, single_domain: bool) -> str | None:
        """The convex problem a linear head on fixed embeddings solves to convergence, if it does (see ``C``)."""
        converge = (stage is Stage.EMBEDDINGS and self.C is not None and not self.head_hidden and not incremental
                    and single_domain)
        return self._solver_kind() if converge else None

    def _build_module(self) -> tuple[TransferModule, list[list[str]]]:
        backbone = self._setup_backbone()
        head = Head(backbone.num_features, self.n_outputs_, tuple(self.head_hidden), self.dropout)
        return TransferModule(backbone.encoder, head, self.freeze_bn_stats).to(self.device_), backbone.blocks

    def _reuse_module(self) -> tuple[TransferModule, list[list[str]]]:
        module = self.net_.module_
        if module.head.layers[-1].out_features != self.n_outputs_:
            raise ValueError(
                f"warm_start=True needs the same outputs as the previous fit ({module.head.layers[-1].out_features}), "
                f"got {self.n_outputs_}; pass classes=... to partial_fit or set warm_start=False."
            )
        return module, self.blocks_

    def _trainable(self, encoder: torch.nn.Module, blocks: list[list[str]]) -> Trainable:
        """Freeze what ``freeze_layers`` says (or add the adapter, which alone trains)."""
        validate_freeze_layers(self.freeze_layers, len(blocks))
        if self.adapter is not None:
            return attach_adapter(encoder, blocks, self._adapter_options())
        names = [name for name, _ in encoder.named_parameters()]
        frozen = frozen_names(blocks, self.freeze_layers, names)
        return Trainable(blocks, apply_freeze(encoder, frozen))

    def _adapter_options(self) -> AdapterOptions:
        return AdapterOptions(self.freeze_layers, self.lora_r, self.lora_alpha, self.lora_dropout,
                              self.lora_target_modules)

    def _stage(self, encoder: torch.nn.Module, trainable: Trainable, items: list) -> tuple[Stage, PrefixSplit | None]:
        """What can be computed once: the frozen backbone's embeddings, a frozen prefix's outputs, or nothing."""
        static = (self.cache and not self.backbone_tuned_ and self.adapter is None and self.unfreeze_every is None
                  and self._augment() is None)
        if not static:
            return Stage.RAW, None
        if trainable.backbone_frozen:
            return Stage.EMBEDDINGS, None
        prefix = self._prefix_split(encoder, items) if self._can_cache_prefix() else None
        return (Stage.RAW, None) if prefix is None else (Stage.FROZEN_PREFIX, prefix)

    def _prefix_split(self, encoder: torch.nn.Module, items: list) -> PrefixSplit | None:
        """Where the frozen prefix of a partly frozen backbone can be run once and cached, its split."""
        dataset = self._make_dataset(items[:2])
        sample, _ = (self._collate_fn() or default_collate)([dataset[i] for i in range(len(dataset))])
        split = split_frozen_prefix(encoder, {k: v.to(self.device_) for k, v in sample.items()})
        if split is None or split.item_nbytes * len(items) > feature_cache.max_bytes:
            return None
        return split

    def _split(self, y_encoded: np.ndarray, seed: int, validate: bool):
        indices = np.arange(len(y_encoded))
        if not (self.early_stopping and validate):
            return indices, None
        n = len(indices)
        if n - math.ceil(self.validation_fraction * n) < 1:
            raise ValueError(
                f"early_stopping=True holds out validation_fraction={self.validation_fraction} of the {n} samples, "
                "which leaves none to train on: lower validation_fraction, add data, or set early_stopping=False."
            )
        stratify = self._stratify_targets(y_encoded)
        try:
            train, valid = train_test_split(indices, test_size=self.validation_fraction, random_state=seed,
                                            stratify=stratify)
        except ValueError:
            train, valid = train_test_split(indices, test_size=self.validation_fraction, random_state=seed)
        if stratify is not None:
            absent = np.setdiff1d(np.unique(stratify), stratify[train])
            if absent.size:
                raise ValueError(
                    f"early_stopping=True holds out validation_fraction={self.validation_fraction} of the {n} "
                    f"samples, which leaves no training sample of class {self.classes_[absent].tolist()}: lower "
                    "validation_fraction, add data, or set early_stopping=False."
                )
        return train, valid

    def _split_domains(self, items: list, y, sample_weight, sample_domain):
        """Source rows and target items; only the classifiers adapt (``DomainAdaptationMixin``)."""
        return split_domains(items, y, sample_weight, sample_domain, mode="refuse", name=type(self).__name__)

    def _sample_weights(self, y_encoded, sample_weight, n: int):
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

    def _fit_standardization(self, module, items, features, train_idx, trainable: Trainable) -> None:
        # A frozen backbone: every training embedding (cached, or one extra pass with cache=False), so cache
        # on and off train the same head. A trainable one: a seeded sample of pretrained embeddings (cached).
        sample = train_idx
        if not trainable.backbone_frozen:
            size = min(len(train_idx), _STANDARDIZATION_SAMPLE)
            sample = np.sort(np.random.default_rng(0).choice(train_idx, size=size, replace=False))
        if features is None:
            # The backbone is still the pretrained one here, so its cached embeddings are valid.
            features = self._embed([items[i] for i in sample], module.encoder)
        else:
            features = features[sample]
        module.head.fit_standardization(torch.as_tensor(features, device=self.device_))

    def _dataset(self, stage: Stage, items, values, y, weights, idx, train: bool = False):
        w = None if weights is None else weights[idx]
        if stage.precomputed:
            return precomputed_dataset(stage, values[idx], y[idx], w)
        return self._make_dataset([items[i] for i in idx], y[idx], w, augment=self._augment() if train else None)

    def _callbacks(self, blocks: list[list[str]], n_train: int, epochs: int, warmup: float, validate: bool) -> list:
        callbacks = [("lr_log", LRLogger())]
        if self.lr_schedule != "constant" or warmup:
            steps = epochs * math.ceil(n_train / self.batch_size)
            schedule = ScheduleFactor(self.lr_schedule, steps, warmup)
            callbacks.append(("lr_schedule", LRScheduler(torch.optim.lr_scheduler.LambdaLR, lr_lambda=schedule,
                                                         step_every="batch")))
        if validate:
            callbacks.append(("early_stopping", EarlyStopping(
                monitor=self.monitor, patience=self.patience, lower_is_better=self.monitor.endswith("loss"),
                load_best=True,
            )))
        if self.unfreeze_every is not None:
            n_frozen = n_frozen_blocks(self.freeze_layers, len(blocks)) or 0
            callbacks.append(("unfreeze", GradualUnfreezing(blocks, n_frozen, self.unfreeze_every)))
        if self.verbose:
            callbacks.append(("progress", ProgressBar()))
        return callbacks

    def _make_net(self, plan: FitPlan):
        rates = plan.rates or Rates(head=HEAD_LR, backbone=HEAD_LR, warmup=0.0)
        iterator = {"num_workers": plan.num_workers, "pin_memory": self.device_.startswith("cuda")}
        if plan.collate is not None:
            iterator["collate_fn"] = plan.collate
        return self._net_class(
            module=plan.module,
            criterion=self._criterion(),
            lr=rates.backbone,
            max_epochs=plan.epochs,
            batch_size=self.batch_size,
            train_split=None if plan.valid_data is None else predefined_split(plan.valid_data),
            callbacks=plan.callbacks,
            device=self.device_,
            verbose=self.verbose,
            iterator_train__shuffle=plan.sampler is None,
            iterator_train__sampler=plan.sampler,
            **{f"iterator_train__{k}": v for k, v in iterator.items()},
            **{f"iterator_valid__{k}": v for k, v in iterator.items()},
            blocks=plan.blocks,
            optimizer_name=self.optimizer,
            group_options={
                "weight_decay": self.weight_decay,
                "layer_decay": self.layer_decay,
                "head_lr": rates.head,
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
            The figure, one panel per recorded quantity.
        """
        check_is_fitted(self)
        return plot_history(self.history_, self.best_epoch_)

    # -------------------------------------------------------- persistence
    def _fitted_encoder(self) -> torch.nn.Module:
        return self.net_.module_.encoder

    def _head_state(self) -> dict[str, torch.Tensor]:
        return self.net_.module_.head.state_dict()

    def _without_encoder(self, state: dict) -> dict:
        # A shallow copy of the net whose module has no encoder; the optimizer is left out (a later fit makes one).
        net = state["net_"]
        stub = TransferModule(torch.nn.Identity(), net.module_.head)
        light = object.__new__(type(net))
        light.__dict__.update({k: v for k, v in net.__dict__.items() if k != "optimizer_"}, module=stub, module_=stub)
        return {**state, "net_": light}

    def _attach_encoder(self, encoder: torch.nn.Module) -> None:
        self.net_.module_.encoder = encoder

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "net_" in self.__dict__:
            self.net_.precision = self.precision_  # after a CUDA model fell back to the CPU

    def _prepare_rebuilt_encoder(self, encoder: torch.nn.Module) -> None:
        restore_adapter(encoder, getattr(self, "lora_target_modules_", None), self._adapter_options())

    def _restore(self, encoder: torch.nn.Module, head_state: dict[str, torch.Tensor], history: list) -> None:
        head = Head(self.n_features_out_, self.n_outputs_, tuple(self.head_hidden), self.dropout)
        head.load_state_dict(head_state)
        module = TransferModule(encoder, head).to(self.device_).eval()
        # Predictions run on embeddings when the head trained on them, on raw inputs otherwise.
        stage = Stage.EMBEDDINGS if self.features_cached_ else Stage.RAW
        net = self._make_net(FitPlan(module=module, blocks=self.blocks_, stage=stage,
                                     collate=None if stage.precomputed else self._collate_fn(),
                                     num_workers=0 if stage.precomputed else self.num_workers_))
        net.initialize()
        net.history = History(history)
        self.net_, self.history_ = net, net.history

    # ------------------------------------------------------------ predict

    def _frozen_for_cache(self) -> bool:
        return not self.backbone_tuned_

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_")

    def _outputs(self, X) -> np.ndarray:
        """The net's outputs (after its nonlinearity) for ``X``, in input order."""
        check_is_fitted(self)
        items = self._check_inputs(X)
        if self.features_cached_:
            features = self._embed(items, self._fitted_encoder())
            return self.net_.predict_proba({Stage.EMBEDDINGS.value: features})
        order = self._inference_order(items)
        outputs = self.net_.predict_proba(self._make_dataset([items[i] for i in order]))
        result = np.empty_like(outputs)
        result[order] = outputs
        return result

"""The fit plan's builder: the ordered steps that decide what one fit trains with.

:class:`FitPlanner` is built for each fit by :class:`~sktransfer._training.TrainableEstimator`'s
``_plan_fit``; its ``plan`` is the one ordered place where a fit decides, as skorch's ``NeuralNet.initialize()``
builds its objects: the module, what trains, the learning rates, what is precomputed, the split,
the datasets, the loader settings and the callbacks (see :mod:`sktransfer._plan` and CONTRIBUTING.md).
Each step returns values; ``plan`` records the fitted attributes they define.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from torch.utils.data import default_collate

from ._adapters import AdapterOptions, attach_adapter
from ._averaging import averaging_callback
from ._cache import feature_cache
from ._callbacks import GradualUnfreezing, LRLogger, TimeLimit
from ._few_shot import head_is_solved
from ._freezing import apply_freeze, frozen_names, n_frozen_blocks, validate_freeze_layers
from ._heads import Head, TransferModule
from ._lr_finder import apply_found_rate
from ._optim import ScheduleFactor, resolve_rates
from ._optuna import pruning_callbacks
from ._plan import FitPlan, LabelledRows, Stage, Trainable, precomputed_dataset
from ._prefix import PrefixSplit, split_frozen_prefix
from ._streams import training_streams
from ._streams.plan import add_streams
from ._streams.pseudo_label import pseudo_label_stream

_STANDARDIZATION_SAMPLE = 64  # embedded (and cached) before fine-tuning to fit the head standardisation


class FitPlanner:
    """The steps of one fit's plan, in the order :meth:`plan` takes them, for the estimator ``est``.

    Built per fit by the estimator's ``_plan_fit`` (composition, not a base class): the steps read the
    estimator's parameters and record on it the fitted attributes they define.
    """

    def __init__(self, est) -> None:
        self.est = est

    def plan(self, items: list, y: np.ndarray, weights: np.ndarray | None, *, warm: bool, seed: int,
                  epochs: int | None, validate: bool, incremental: bool, unlabelled: list | None = None,
                  deadline: float | None = None) -> FitPlan:
        """Decide, in order, everything this fit trains with; record the fitted attributes it defines.

        ``unlabelled``: the inputs of the rows without labels (target-domain rows, or a teacher's unlabelled
        rows) that ``_split_domains`` kept for the training streams. ``deadline``: when training must stop
        (``time_limit``; a ``time.monotonic()`` value), None: no limit.
        """
        streams = training_streams(self.est)
        if warm:
            module, blocks = self._reuse_module()
        else:
            module, blocks = self._build_module()
            self.est.backbone_seed_ = seed
            self.est.backbone_tuned_ = False
        trainable = self._trainable(module.encoder, blocks)
        self.est.blocks_ = trainable.blocks
        self.est.n_trainable_backbone_params_ = trainable.n_params
        if trainable.lora_targets is not None:
            self.est.lora_target_modules_ = trainable.lora_targets
        est = self.est
        rates = resolve_rates(est.lr, est.head_lr, est.warmup, module.encoder, adapter=est.adapter is not None,
                              backbone_trains=not trainable.backbone_frozen or est.unfreeze_every is not None)
        est.lr_ = {"head": rates.head, "backbone": rates.backbone if rates.family or est.lr != "auto" else None,
                   "warmup": rates.warmup}
        stage, prefix = self._stage(module.encoder, trainable, items)
        self.est.features_cached_ = stage is Stage.EMBEDDINGS
        self.est.prefix_cached_ = stage is Stage.FROZEN_PREFIX
        self.est.backbone_tuned_ = self.est.backbone_tuned_ or not trainable.backbone_frozen
        train_idx, valid_idx = self._split(y, seed, validate)
        values = self.est._embed(items, module.encoder, prefix=prefix) if stage.precomputed else None
        head_solver = self._head_solver(stage, incremental, streams)
        head_solved = head_solver is not None or any(stream.solves_head for stream in streams)
        self_training = getattr(self.est, "semi_supervised_", None) if head_solved else None
        unlabelled_values = None
        if self_training is not None and head_solver is not None:
            unlabelled_values = self.est._embed(unlabelled, module.encoder)
        if not warm:
            # Shrunk variances where measured: a frozen backbone's head, and the features of contrastive tuning.
            shrink = ((trainable.backbone_frozen and self.est.unfreeze_every is None)
                      or any(stream.solves_head for stream in streams))
            self._fit_standardization(module, items, values, stage, prefix, train_idx, trainable, shrink,
                                      unlabelled_values)
        streams = (*streams, *pseudo_label_stream(self.est, head_solved))
        epochs = epochs or self.est.max_epochs
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
            train_data=train_data,
            valid_data=valid_data,
            sampler=self.est._train_sampler([items[i] for i in train_idx]) if raw else None,
            collate=self.est._collate_fn() if raw else None,
            num_workers=self.est.num_workers_ if raw else 0,
            train_batch_size=self.est.batch_size,
            head_solver=head_solver,
            self_training=self_training,
            unlabelled_items=unlabelled if self_training is not None else None,
            unlabelled_values=unlabelled_values,
        )
        if streams:
            plan = add_streams(self.est, plan, streams, items, train_idx, weights is not None, unlabelled)
            if any(stream.solves_head for stream in streams):
                plan.tuned_head = self.est._solver_kind()
                plan.tuned_rows = LabelledRows([items[i] for i in train_idx], y[train_idx],
                                               None if weights is None else weights[train_idx])
        rows = len(plan.sampler) if plan.sampler is not None else len(plan.train_data)
        plan.steps = epochs * math.ceil(rows / plan.train_batch_size)
        plan.callbacks = self._callbacks(trainable.blocks, plan.steps, rates.warmup, valid_data is not None, deadline,
                                         epochs)
        if est.lr == "find" and head_solver is None and (rates.family or est.head_lr is None):
            apply_found_rate(est, plan, reuse=warm and incremental)
        else:
            est.lr_finder_ = None
        return plan

    def _head_solver(self, stage: Stage, incremental: bool, streams: tuple) -> str | None:
        """The convex problem a linear head on fixed embeddings solves to convergence, if it does (see ``C``)."""
        converge = stage is Stage.EMBEDDINGS and head_is_solved(self.est) and not incremental and not streams
        return self.est._solver_kind() if converge else None

    def _build_module(self) -> tuple[TransferModule, list[list[str]]]:
        backbone = self.est._setup_backbone()
        head = Head(backbone.num_features, self.est.n_outputs_, tuple(self.est.head_hidden), self.est.dropout)
        return TransferModule(backbone.encoder, head, self.est.freeze_bn_stats).to(self.est.device_), backbone.blocks

    def _reuse_module(self) -> tuple[TransferModule, list[list[str]]]:
        module = self.est.net_.module_
        if module.head.layers[-1].out_features != self.est.n_outputs_:
            raise ValueError(
                f"warm_start=True needs the same outputs as the previous fit ({module.head.layers[-1].out_features}), "
                f"got {self.est.n_outputs_}; pass classes=... to partial_fit or set warm_start=False."
            )
        return module, self.est.blocks_

    def _trainable(self, encoder: torch.nn.Module, blocks: list[list[str]]) -> Trainable:
        """Freeze what ``freeze_layers`` says (or add the adapter, which alone trains)."""
        validate_freeze_layers(self.est.freeze_layers_, len(blocks))
        if self.est.adapter is not None:
            return attach_adapter(encoder, blocks, self._adapter_options())
        names = [name for name, _ in encoder.named_parameters()]
        frozen = frozen_names(blocks, self.est.freeze_layers_, names)
        return Trainable(blocks, apply_freeze(encoder, frozen))

    def _adapter_options(self) -> AdapterOptions:
        return AdapterOptions.of(self.est.adapter, self.est.freeze_layers_)

    def _stage(self, encoder: torch.nn.Module, trainable: Trainable, items: list) -> tuple[Stage, PrefixSplit | None]:
        """What can be computed once: the frozen backbone's embeddings, a frozen prefix's outputs, or nothing."""
        # ``cache`` only decides whether these values are kept for later fits: never what is precomputed.
        static = (not self.est.backbone_tuned_ and self.est.adapter is None and self.est.unfreeze_every is None
                  and self.est._augment() is None)
        if not static:
            return Stage.RAW, None
        if trainable.backbone_frozen:
            return Stage.EMBEDDINGS, None
        prefix = self._prefix_split(encoder, items) if self.est._can_cache_prefix() else None
        return (Stage.RAW, None) if prefix is None else (Stage.FROZEN_PREFIX, prefix)

    def _prefix_split(self, encoder: torch.nn.Module, items: list) -> PrefixSplit | None:
        """Where the frozen prefix of a partly frozen backbone can be run once and cached, its split."""
        dataset = self.est._make_dataset(items[:2])
        sample, _ = (self.est._collate_fn() or default_collate)([dataset[i] for i in range(len(dataset))])
        split = split_frozen_prefix(encoder, {k: v.to(self.est.device_) for k, v in sample.items()})
        if split is None or split.item_nbytes * len(items) > feature_cache.max_bytes:
            return None
        return split

    def _split(self, y_encoded: np.ndarray, seed: int, validate: bool):
        indices = np.arange(len(y_encoded))
        if not (self.est.early_stopping and validate):
            return indices, None
        n = len(indices)
        if n - math.ceil(self.est.validation_fraction * n) < 1:
            raise ValueError(
                f"early_stopping=True holds out validation_fraction={self.est.validation_fraction} of the {n} samples, "
                "which leaves none to train on: lower validation_fraction, add data, or set early_stopping=False."
            )
        stratify = self.est._stratify_targets(y_encoded)
        try:
            train, valid = train_test_split(indices, test_size=self.est.validation_fraction, random_state=seed,
                                            stratify=stratify)
        except ValueError:
            train, valid = train_test_split(indices, test_size=self.est.validation_fraction, random_state=seed)
        if stratify is not None:
            absent = np.setdiff1d(np.unique(stratify), stratify[train])
            if absent.size:
                raise ValueError(
                    f"early_stopping=True holds out validation_fraction={self.est.validation_fraction} of the {n} "
                    f"samples, which leaves no training sample of class {self.est.classes_[absent].tolist()}: lower "
                    "validation_fraction, add data, or set early_stopping=False."
                )
        return train, valid

    def _fit_standardization(self, module, items, values, stage: Stage, prefix, train_idx,
                             trainable: Trainable, shrink: bool, unlabelled_values: np.ndarray | None) -> None:
        # A frozen backbone: every training embedding (cached, or one extra pass with cache=False), so cache
        # on and off train the same head, and those of the unlabelled rows it self-trains on. A trainable
        # one: a seeded sample of pretrained embeddings (cached).
        sample = train_idx
        if not trainable.backbone_frozen:
            size = min(len(train_idx), _STANDARDIZATION_SAMPLE)
            sample = np.sort(np.random.default_rng(0).choice(train_idx, size=size, replace=False))
        # The backbone is still the pretrained one here, so embeddings and prefix outputs are valid.
        if stage is Stage.EMBEDDINGS:
            features = values[sample] if unlabelled_values is None else np.concatenate([values[sample],
                                                                                         unlabelled_values])
        elif stage is Stage.FROZEN_PREFIX:  # the suffix alone, on the cached outputs: no decoding, no prefix
            features = self.est._embed_prefix_outputs(values[sample], prefix, module.encoder)
        else:
            features = self.est._embed([items[i] for i in sample], module.encoder)
        module.head.fit_standardization(torch.as_tensor(features, device=self.est.device_), shrink=shrink)

    def _dataset(self, stage: Stage, items, values, y, weights, idx, train: bool = False):
        w = None if weights is None else weights[idx]
        if stage.precomputed:
            return precomputed_dataset(stage, values[idx], y[idx], w)
        augment = self.est._augment() if train else None
        return self.est._make_dataset([items[i] for i in idx], y[idx], w, augment=augment)

    def _callbacks(self, blocks: list[list[str]], steps: int, warmup: float, validate: bool,
                   deadline: float | None, epochs: int) -> list:
        callbacks = [("lr_log", LRLogger())]
        if self.est.lr_schedule != "constant" or warmup:
            schedule = ScheduleFactor(self.est.lr_schedule, steps, warmup)
            callbacks.append(("lr_schedule", LRScheduler(torch.optim.lr_scheduler.LambdaLR, lr_lambda=schedule,
                                                         step_every="batch")))
        if validate:
            callbacks.append(("early_stopping", EarlyStopping(
                monitor=self.est.monitor, patience=self.est.patience, lower_is_better=self.est.monitor.endswith("loss"),
                load_best=True,
            )))
        if self.est.unfreeze_every is not None:
            n_frozen = n_frozen_blocks(self.est.freeze_layers_, len(blocks)) or 0
            callbacks.append(("unfreeze", GradualUnfreezing(blocks, n_frozen, self.est.unfreeze_every)))
        if deadline is not None:
            callbacks.append(("time_limit", TimeLimit(deadline)))
        averaging = averaging_callback(self.est.weight_averaging, steps=steps, epochs=epochs,
                                       monitor=self.est.monitor if validate else None)
        if averaging is not None:  # after early stopping, whose restored best weights it replaces
            callbacks.append(("weight_averaging", averaging))
        callbacks.extend(pruning_callbacks())  # inside an OptunaPruning block
        if self.est.verbose:
            callbacks.append(("progress", ProgressBar()))
        return callbacks

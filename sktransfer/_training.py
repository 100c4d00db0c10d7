"""Fine-tuning: what the image and text classifiers and regressors share, built once on skorch."""

from __future__ import annotations

import copy
import os
import threading
import time
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.history import History

from ._adapters import AdapterOptions, LoRA, resolve_adapter, restore_adapter
from ._converged_head import solve_head, solve_tuned_head
from ._device import cuda_indices, resolve_device
from ._domain import split_domains
from ._embedding import BackboneEstimator
from ._export import export_onnx
from ._freezing import validate_freeze_layers
from ._heads import Head, TransferModule
from ._lr_finder import LRFinderResult, lr_find
from ._net_builder import build_net
from ._no_effect import warn_ineffective
from ._plan import FitPlan, Stage
from ._planner import FitPlanner
from ._plotting import plot_history
from ._validation import Interval, StrOptions, check_sample_weight, fraction, positive_int, positive_real

# torch's random generator is the process's: fits in threads take turns, so that each draws from its own seed.
_SEEDED = threading.RLock()
# What _prepare_targets sets: restored when a warm fit fails on its targets.
_TARGET_ATTRIBUTES = ("classes_", "multilabel_", "multioutput_", "output_names_", "n_outputs_", "y_mean_", "y_scale_",
                      "y_ndim_")


def _target_kind(estimator) -> str:
    if getattr(estimator, "multioutput_", False):
        return "multi-output"
    return "multi-label" if getattr(estimator, "multilabel_", False) else "regression"


@dataclass(repr=False, eq=False, kw_only=True)
class TrainableEstimator(BackboneEstimator):
    """Base of the estimators that train a head (and optionally the backbone) with skorch.

    Task subclasses provide ``_net_class``, ``_prepare_targets``, ``_criterion``, ``_net_kwargs``,
    ``_stratify_targets`` and ``_check_predict_targets``.
    """

    freeze_layers: Any = "auto"
    lr: float | str = "auto"
    max_epochs: int = 10
    time_limit: float | None = None
    weight_decay: float = 0.01
    dropout: float = 0.0
    head_hidden: tuple = ()
    C: float | str | None = "auto"
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
    weight_averaging: str | None = None
    grad_accum_steps: int = 1
    warm_start: bool = False
    random_state: Any = None
    adapter: Any = None
    compile: bool = False

    _parameter_constraints = {
        "freeze_layers": [StrOptions({"auto", "all", "none"}), Integral, list, tuple],
        "lr": [positive_real, StrOptions({"auto", "find"})],
        "max_epochs": [positive_int],
        "time_limit": [positive_real, None],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "dropout": [fraction],
        "head_hidden": [tuple, list],
        "C": [positive_real, StrOptions({"auto", "cv"}), None],
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
        "weight_averaging": [StrOptions({"ema", "swa", "soup"}), None],
        "grad_accum_steps": [positive_int],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "adapter": [StrOptions({"lora"}), LoRA, None],
        "compile": ["boolean"],
    }

    def _validate(self) -> None:
        validate_freeze_layers(self.freeze_layers, None)
        super()._validate()
        if any(not isinstance(w, Integral) or isinstance(w, bool) or w < 1 for w in self.head_hidden):
            raise ValueError(
                f"head_hidden must be a tuple of positive ints (hidden layer sizes), got {self.head_hidden!r}."
            )
        resolve_adapter(self.adapter)
        if self.adapter is not None and self.unfreeze_every is not None:
            raise ValueError(
                "adapter='lora' and unfreeze_every cannot be combined: an adapter never trains the backbone's "
                "own weights. Set unfreeze_every=None, or adapter=None for gradual unfreezing."
            )

    def _augment(self):
        return None

    def _choose_strategies(self, y_encoded: np.ndarray, *, warm: bool) -> None:
        """Resolve this fit's "auto" choices once its targets are known: ``freeze_layers_`` ("auto" freezes the
        backbone here; the classifiers may tune it from few labels, see ``_few_shot.choose_few_shot``)."""
        self.freeze_layers_ = "all" if self.freeze_layers == "auto" else self.freeze_layers

    def _plan_fit(self, items: list, y: np.ndarray, weights: np.ndarray | None, **decisions) -> FitPlan:
        """This fit's plan (see :class:`~sktransfer._planner.FitPlanner`, built anew for each fit)."""
        return FitPlanner(self).plan(items, y, weights, **decisions)

    def _adapter_options(self) -> AdapterOptions:
        return AdapterOptions.of(self.adapter, getattr(self, "freeze_layers_", self.freeze_layers))

    def _split_domains(self, items: list, y, sample_weight, sample_domain):
        """Source rows and target items; only the classifiers adapt (``split_training_rows`` in ``_distill.py``)."""
        return split_domains(items, y, sample_weight, sample_domain, mode="refuse", name=type(self).__name__)

    def _sample_weights(self, y_encoded, sample_weight, n: int):
        return check_sample_weight(sample_weight, n)

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
        deadline = None if self.time_limit is None else time.monotonic() + self.time_limit  # the whole call's
        if not (self.early_stopping and self.refit_full):
            self._fit(X, y, sample_weight, warm=warm, sample_domain=sample_domain, deadline=deadline)
            self._compile_runtime(X)
            return self
        start = copy.deepcopy(self.net_.module_) if warm else None
        self._fit(X, y, sample_weight, warm=warm, sample_domain=sample_domain, deadline=deadline)
        validation_history = self.history_
        if start is not None:
            self.net_.module_ = start
        self._fit(X, y, sample_weight, warm=warm, epochs=self.best_epoch_, validate=False, sample_domain=sample_domain,
                  deadline=deadline)
        self.validation_history_ = validation_history
        self._compile_runtime(X)
        return self

    def _fit(self, X, y, sample_weight=None, *, warm: bool, classes=None, epochs: int | None = None,
             validate: bool = True, incremental: bool = False, sample_domain=None, deadline: float | None = None):
        if deadline is None and self.time_limit is not None:
            deadline = time.monotonic() + self.time_limit
        self._validate()
        self.__dict__.pop("runtime_", None)  # compiled from the weights this fit changes
        items = self._check_inputs(X)
        items, y, sample_weight, unlabelled = self._split_domains(items, y, sample_weight, sample_domain)
        before = {k: v for k, v in vars(self).items() if k in _TARGET_ATTRIBUTES} if warm else {}
        try:
            y_encoded = self._prepare_targets(y, len(items), classes)
            if warm:
                self._check_same_targets(before)
            self._choose_strategies(y_encoded, warm=warm or incremental)
        except Exception:
            self.__dict__.update(before)  # a failed warm fit leaves the fitted model as it was
            raise
        if self.early_stopping and validate and self.monitor == "valid_acc" and not issubclass(
                self._net_class, NeuralNetClassifier):
            raise ValueError(
                "monitor='valid_acc' needs single-label classification: accuracy is not recorded for "
                f"{_target_kind(self)} targets. Use monitor='valid_loss' (for multi-output targets the summed loss)."
            )
        weights = self._sample_weights(y_encoded, sample_weight, len(items))
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if not warm:
            self.__dict__.pop("net_", None)  # free the previous model's device memory before building the next
        device = self.device_ if warm else resolve_device(self.device)
        with _SEEDED, torch.random.fork_rng(devices=cuda_indices(device)):
            torch.manual_seed(seed)
            plan = self._plan_fit(items, y_encoded, weights, warm=warm, seed=seed, epochs=epochs, validate=validate,
                                  incremental=incremental, unlabelled=unlabelled, deadline=deadline)
            if validate:
                warn_ineffective(self, plan)
            net = self._make_net(plan)
            plan.module.use_suffix(plan.suffix)
            try:
                pseudo = None
                if plan.head_solver is None:
                    net.fit(plan.train_data, plan.train_data.y)
                    self.C_ = None
                else:
                    self.C_, pseudo = solve_head(net, plan, kind=plan.head_solver, C=self.C, seed=seed)
                    net._release_training_state()
            finally:
                plan.module.use_suffix(None)
                net.iterator_train__sampler = None  # its per-item lengths are not part of the model
            if plan.tuned_head is not None:
                self.C_, pseudo = solve_tuned_head(self, net, plan, C=self.C, seed=seed)
            if plan.self_training is not None:
                self.n_pseudo_labelled_ = int((pseudo >= 0).sum())
        # Left in eval mode, so that predictions (from any thread) never toggle train/eval.
        net.module_.eval()
        self.net_ = net
        self.history_ = net.history
        self.n_epochs_ = len(net.history)
        self.time_limit_reached_ = bool(getattr(dict(net.callbacks_).get("time_limit"), "reached_", False))
        self.best_epoch_ = 1 if plan.head_solver else self._best_epoch()
        return self

    def _make_net(self, plan: FitPlan):
        return build_net(self, plan)

    def _best_epoch(self) -> int:
        # The epoch whose weights EarlyStopping(load_best=True) restored.
        stopper = dict(self.net_.callbacks_).get("early_stopping")
        return self.n_epochs_ if stopper is None else int(stopper.best_epoch_)

    def lr_find(self, X, y, sample_weight=None, *, start_lr: float = 1e-7, end_lr: float = 10.0,
                num_iter: int = 100) -> LRFinderResult:
        """Learning-rate range test (fastai's ``lr_find``) on the model that ``fit(X, y)`` would train.

        Trains ``num_iter`` batches at rates rising exponentially from ``start_lr`` to ``end_lr`` (the
        rate of the backbone's last block, and of the head unless ``head_lr``), stopping once the smoothed
        loss exceeds 4 times its best, then restores everything: before or after a fit, the estimator is
        left as it was (weights, fitted attributes, random number generators). ``fit`` with
        ``lr="find"`` runs the same test.

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, as for ``fit``.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the training loss.
        start_lr : float, default=1e-7
            The first batch's rate.
        end_lr : float, default=10.0
            The rate the last batch would reach.
        num_iter : int, default=100
            Batches (the training rows are cycled through as often as needed); at least 20.

        Returns
        -------
        result : LRFinderResult
            The rates, the smoothed losses, the suggested rate and ``plot()``.
        """
        return lr_find(self, X, y, sample_weight, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter)

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

    def explain(self, X, target=None, method: str = "auto"):
        """Explain the predictions for ``X``: a map per image, a score per word (see :func:`sktransfer.explain`).

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, in any of the forms ``fit`` accepts.
        target : label, int or None, default=None
            A class of ``classes_`` (default: each input's predicted class), or an output index for
            regressors and multi-output classifiers (default 0).
        method : str, default="auto"
            ``"gradcam"`` or ``"integrated_gradients"`` for images, ``"occlusion"`` or
            ``"integrated_gradients"`` for texts; ``"auto"`` picks the measured default.

        Returns
        -------
        explanation : Explanation
            The attributions, with ``plot()`` and an HTML view. Needs ``pip install sktransfer[explain]``.
        """
        from ._explain import explain

        return explain(self, X, target, method=method)

    def export_onnx(self, path: str | os.PathLike) -> Path:
        """Export the fitted model (inputs to probabilities, or to predictions for a regressor) to ONNX.

        Images: one input ``pixel_values`` of shape (N, 3, H, W), preprocessed as the backbone's
        ``data_config_`` says. Texts: inputs ``input_ids`` and ``attention_mask``; the tokenizer is saved
        beside the ONNX file (``save_pretrained``), so the same tokenisation can be reproduced. A
        multi-output classifier has one output per task, ``probabilities_<name>`` for each name in
        ``output_names_``, in that order. Needs ``pip install sktransfer[onnx]``.

        Parameters
        ----------
        path : str or path-like
            The ``.onnx`` file to write.

        Returns
        -------
        path : Path
            The file written.
        """
        return export_onnx(self, path)

    def _export_splits(self) -> list[tuple[str, int]] | None:
        """Multi-output models: each output's name and number of classes (one ONNX output each)."""
        return None

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
        if self.adapter is not None:
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
        return self._item_outputs(self._check_inputs(X))

    def _item_outputs(self, items: list) -> np.ndarray:
        # The image estimators' test-time augmentation (_tta.py) blends this with the outputs of views of the items.
        if getattr(self, "runtime_", None) is not None:  # the compiled backbone, then the head (as the net's predict)
            features, module = self._embed(items, self._fitted_encoder()), self.net_.module_
            with self._inference(module):
                logits = module.head(torch.as_tensor(features, device=self.device_))
            return self.net_._get_predict_nonlinearity()(logits).float().cpu().numpy()
        if self.features_cached_:
            features = self._embed(items, self._fitted_encoder())
            return self.net_.predict_proba({Stage.EMBEDDINGS.value: features})
        order = self._inference_order(items)
        outputs = self.net_.predict_proba(self._make_dataset([items[i] for i in order]))
        result = np.empty_like(outputs)
        result[order] = outputs
        return result

"""What every sktransfer estimator shares: loading the backbone and computing (cached) embeddings."""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from . import _persistence
from ._backbones import Backbone
from ._bn_folding import folded_for_inference
from ._cache import EmbeddingKey, feature_cache, feature_keys, fingerprint, weights_identity
from ._device import resolve_device, resolve_num_workers, resolve_precision, to_device
from ._fitted_backbone import backbone_from_model, resolve_base_model
from ._modes import evaluating
from ._net import _AMP_DTYPES
from ._persistence import is_saved_model_dir, load
from ._runtimes import RUNTIME_PARAMETERS, compile_runtime, resolve_runtime
from ._sklearn_compat import _clone_parametrized
from ._truncate import keep_first_blocks
from ._validation import Interval, StrOptions, check_device, positive_int, validate_params


@dataclass(repr=False, eq=False, kw_only=True)
class BackboneEstimator(TransformerMixin, BaseEstimator):
    """Base of all sktransfer estimators: a backbone, its preprocessing, and cached embeddings.

    Subclasses provide the input modality (``_modality``, ``_check_inputs``, ``_load_backbone``, ``_checked_backbone``,
    ``_make_dataset``, ``_collate_fn``, ``_preprocessing_key``, ``_inference_order``,
    ``_item_fingerprint``, ``_can_cache_prefix``, ``_export_inputs``).
    """

    backbone: Any = None
    pretrained: bool = True
    keep_blocks: int | None = None
    batch_size: int = 32
    cache: bool = True
    cache_dir: str | None = None
    precision: str = "auto"
    num_workers: int | None = None
    device: str = "auto"
    runtime: Any = None
    verbose: int = 0

    _parameter_constraints = {
        "backbone": [str, os.PathLike, torch.nn.Module, BaseEstimator],
        "pretrained": ["boolean"],
        "keep_blocks": [positive_int, None],
        "batch_size": [positive_int],
        "cache": ["boolean"],
        "cache_dir": [str, os.PathLike, None],
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "num_workers": [Interval(Integral, 0, None, closed="left"), None],
        "device": [str],
        **RUNTIME_PARAMETERS,
        "verbose": ["verbose"],
    }

    _training_only_params = ()  # parameters only fit reads (a distillation teacher): save() writes None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32 whatever the input
        return tags

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _persistence.register_estimator(cls)

    def __getstate__(self) -> dict:
        # A copy: object.__getstate__ may return __dict__ itself.
        return _persistence.pickled_state(self, dict(super().__getstate__()))

    def __setstate__(self, state: dict) -> None:
        encoder_state = state.pop("_encoder_state", None)
        super().__setstate__(state)
        _persistence.unpickled(self, encoder_state)

    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted estimator to a directory: ``model.safetensors`` weights and ``config.json``.

        Only the backbone parameters that training changed (and the head) are written when the
        backbone is named by a string (it is rebuilt from its name on load); a user ``nn.Module``
        backbone is written in full. ``cache_dir`` is not written: where a loaded model stores
        embeddings is for :func:`sktransfer.load`'s caller to say. Read the directory back with
        :func:`sktransfer.load`.

        Parameters
        ----------
        path : str or path-like
            Directory to create (or overwrite files in).

        Returns
        -------
        path : Path
            The directory.
        """
        return _persistence.save(self, path)

    def _prepare_rebuilt_encoder(self, encoder: torch.nn.Module) -> None:
        """Give a rebuilt pretrained ``encoder`` the structure training added to it (nothing by default)."""

    def _setup_backbone(self) -> Backbone:
        """Resolve device, precision and the backbone; record the fitted attributes they define."""
        self.device_ = resolve_device(self.device)
        self.precision_ = resolve_precision(self.precision, self.device_)
        self.num_workers_ = resolve_num_workers(self.num_workers, self.device_)
        given = load(self.backbone) if is_saved_model_dir(self.backbone) else self.backbone
        self.base_model_ = resolve_base_model(self, given)
        backbone = self._resolve_backbone()
        to_device(backbone.encoder, self.device_)
        self.backbone_identity_ = weights_identity(backbone.identity, named=_persistence.weights_named(self))
        self.n_backbone_blocks_ = len(backbone.blocks)
        self.n_features_out_ = backbone.num_features
        self.data_config_ = backbone.data_config
        if backbone.tokenizer is not None:
            self.tokenizer_ = backbone.tokenizer
        return backbone

    def _resolve_backbone(self) -> Backbone:
        """The backbone: a copy of the fitted model's it starts from (``base_model_``), else the named or given one;
        cut to its first ``keep_blocks`` blocks (fit, pickles and ``load`` all rebuild it here)."""
        base = getattr(self, "base_model_", None)
        backbone = backbone_from_model(base) if base is not None else self._load_backbone()
        return self._checked_backbone(keep_first_blocks(backbone, self.keep_blocks))

    def _checked_backbone(self, backbone: Backbone) -> Backbone:
        """The modality's checks of a resolved backbone against the parameters (none by default)."""
        return backbone

    def _loader(self, dataset) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            collate_fn=self._collate_fn(),
            num_workers=self.num_workers_,
            pin_memory=self.device_.startswith("cuda"),
            persistent_workers=False,
            generator=torch.Generator(),  # embedding must not consume the global RNG that training draws from
        )

    def _embed(self, items: list, encoder: torch.nn.Module, *, use_cache: bool = True, prefix=None) -> np.ndarray:
        """Pooled backbone features of ``items`` as float32, from the cache where possible.

        With a :class:`~sktransfer._prefix.PrefixSplit`, the outputs of its frozen prefix instead.
        """
        if getattr(self, "runtime_", None) is not None and prefix is None and encoder is self._fitted_encoder():
            return self._encode(items, encoder, self.runtime_)  # the compiled backbone; never served from the cache
        forward = encoder if prefix is None else prefix.prefix
        if not (use_cache and self.cache):
            return self._encode(items, encoder, forward)
        key = EmbeddingKey(backbone=self.backbone_identity_, precision=self.precision_,
                           prefix_boundary=None if prefix is None else prefix.boundary,
                           **self._preprocessing_key(encoder))
        keys = feature_keys(items, key, self._item_fingerprint)
        compute = lambda positions: self._encode([items[i] for i in positions], encoder, forward)  # noqa: E731
        return feature_cache.get_or_compute(keys, compute, self.cache_dir)

    @contextmanager
    def _inference(self, *modules: torch.nn.Module):
        """Eval and inference mode under the precision's autocast (see :func:`evaluating`)."""
        dtype = _AMP_DTYPES.get(self.precision_)
        with evaluating(*modules), torch.inference_mode(), torch.autocast(
                torch.device(self.device_).type, dtype=dtype, enabled=dtype is not None):
            yield

    def _encode(self, items: list, encoder: torch.nn.Module, forward) -> np.ndarray:
        order = self._inference_order(items)
        ordered = [items[i] for i in order]
        chunks = []
        loader = self._loader(self._make_dataset(ordered))
        with self._inference(encoder):
            for x, _ in tqdm(loader, desc="embedding", disable=not self.verbose, leave=False):
                x = {k: v.to(self.device_, non_blocking=True) for k, v in x.items()}
                if not chunks and isinstance(forward, torch.nn.Module):  # not a frozen prefix's partial pass
                    forward = folded_for_inference(forward, {k: v[:1] for k, v in x.items()})
                chunks.append(forward(**x).float().cpu().numpy())
        features = np.concatenate(chunks)
        out = np.empty_like(features)
        out[order] = features
        return out

    def _embed_prefix_outputs(self, outputs: np.ndarray, prefix, encoder: torch.nn.Module) -> np.ndarray:
        """Pooled features from cached outputs of ``encoder``'s frozen prefix: its suffix alone runs."""
        chunks = []
        with self._inference(prefix.suffix, encoder):
            for start in range(0, len(outputs), self.batch_size):
                batch = torch.as_tensor(outputs[start:start + self.batch_size], device=self.device_)
                chunks.append(prefix.suffix(batch).float().cpu().numpy())
        return np.concatenate(chunks)

    def _inference_order(self, items: list) -> np.ndarray:
        return np.arange(len(items))

    _item_fingerprint = staticmethod(fingerprint)

    def _can_cache_prefix(self) -> bool:
        """Whether the backbone may be split into a cached frozen prefix and a trained suffix."""
        return False

    def _train_sampler(self, items: list) -> torch.utils.data.Sampler | None:
        """The order of training items per epoch, or None for a plain shuffle."""
        return None

    def _fitted_encoder(self) -> torch.nn.Module:
        return self.encoder_

    def transform(self, X) -> np.ndarray:
        """Return the pooled backbone embeddings of ``X``.

        The embedders return the pretrained backbone's embeddings. The classifiers and regressors
        return their fitted backbone's: the fine-tuned one (blocks or LoRA adapters) when training
        changed it (``backbone_tuned_``), else the pretrained one; the head is not applied (its
        outputs are ``predict``'s and ``predict_proba``'s). Embeddings of an unchanged pretrained
        backbone come from the feature cache when ``cache=True``.

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, in any of the forms ``fit`` accepts.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features_out_)
            One float32 row per input, in the order of ``X``.
        """
        check_is_fitted(self)
        items = self._check_inputs(X)
        return self._embed(items, self._fitted_encoder(), use_cache=self._frozen_for_cache())

    def _frozen_for_cache(self) -> bool:
        return True

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Get the names of the embedding dimensions, as scikit-learn transformers give them.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored: the embedding dimensions do not derive from input features.

        Returns
        -------
        feature_names_out : ndarray of str objects of shape (n_features_out_,)
            ``<estimator name in lower case>0``, ``...1`` and so on.
        """
        check_is_fitted(self)
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_features_out_")

    def __sklearn_clone__(self) -> BackboneEstimator:
        """``clone``, except that parameters holding fitted models (a ``backbone`` to start from, a
        ``teacher``) are passed on as they are: cloning them would unfit them. Fits never modify them."""
        kept = {name: value for name, value in self.get_params(deep=False).items() if is_fitted_model(value)}
        shell = copy.copy(self)
        shell.__dict__.update(dict.fromkeys(kept))
        new = _clone_parametrized(shell)
        new.__dict__.update(kept)
        return new

    def _validate(self) -> None:
        validate_params(self)
        check_device(self.device)
        resolve_runtime(self.runtime)

    def _compile_runtime(self, X) -> None:
        """After training: the ``runtime`` compiled from the fitted backbone, calibrated on rows of ``X``."""
        self.runtime_ = compile_runtime(self, [] if self.runtime is None else self._check_inputs(X))


@dataclass(repr=False, eq=False, kw_only=True)
class EmbedderBase(BackboneEstimator):
    """A transformer that returns the backbone's pooled embeddings; ``fit`` only validates and loads."""

    def fit(self, X, y=None) -> EmbedderBase:
        """Validate the parameters and load the backbone (no training happens).

        Parameters
        ----------
        X : sequence of inputs
            Images or texts; checked for validity only.
        y : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        self : object
            The estimator, with its backbone loaded.
        """
        self._validate()
        self._check_inputs(X)
        self.backbone_seed_ = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.backbone_seed_)
            backbone = self._setup_backbone()
        self._attach_encoder(backbone.encoder)
        self._compile_runtime(X)
        return self

    # The persistence hooks (see _persistence.py): the pickle and save() keep the backbone's identity
    # (and a user module's weights); nothing else is trained.
    def _without_encoder(self, state: dict) -> dict:
        return {k: v for k, v in state.items() if k != "encoder_"}

    def _attach_encoder(self, encoder: torch.nn.Module) -> None:
        for param in encoder.parameters():
            param.requires_grad_(False)
        self.encoder_ = encoder.eval()

    def _head_state(self) -> dict[str, torch.Tensor]:
        return {}

    def _restore(self, encoder: torch.nn.Module, head_state: dict[str, torch.Tensor], history: list) -> None:
        self._attach_encoder(encoder)


def is_fitted_model(value: Any) -> bool:
    """Whether ``value`` is a fitted scikit-learn estimator (a model a parameter may start from)."""
    if isinstance(value, type) or not hasattr(value, "get_params") or not hasattr(value, "fit"):
        return False
    try:
        check_is_fitted(value)
    except (TypeError, ValueError):  # NotFittedError is a ValueError
        return False
    return True

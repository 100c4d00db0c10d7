"""Saving fitted estimators: small pickles and ``save``/``load`` directories (safetensors + JSON).

One policy for every estimator, embedders included. A backbone named by a string (packaged, timm,
torchvision, Hugging Face or local directory) is rebuilt from the registry on load, so only its
parameters that training changed (the trainable ones, and the buffers) are stored, with the head; a
fingerprint of the rest makes sure the rebuilt backbone is the one trained on. A user ``nn.Module``
backbone cannot be rebuilt from a name, so all of its weights are stored.

:func:`load` reads data, never code: ``config.json`` may only name one of sktransfer's own estimator
classes, and is checked whole (JSON, keys, class, parameter names) before anything is built from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._device import resolve_device, resolve_num_workers, resolve_precision

_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"
_VERSIONED = ("sktransfer", "torch", "timm", "transformers", "skorch", "scikit-learn", "safetensors")
_NOT_SAVED = {"net_", "encoder_", "history_", "tokenizer_", "device_", "precision_", "num_workers_", "base_model_"}
_BASE = "base"  # the sub-folder that holds the fitted model a model started from (sequential transfer)


def _versions() -> dict[str, str | None]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _to_json(value.tolist()), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(_from_json(value["__ndarray__"]), dtype=np.dtype(value["dtype"]))
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _json_able(value: Any) -> bool:
    try:
        json.dumps(_to_json(value))
    except (TypeError, ValueError):
        return False
    return True


class PersistenceMixin:
    """Pickling, ``save`` and :func:`load` for every sktransfer estimator.

    Hooks of the estimator: ``_fitted_encoder()``, ``_without_encoder(state)`` (the pickled state
    minus the encoder), ``_attach_encoder(encoder)``, ``_head_state()`` and ``_restore(encoder, head,
    history)``; ``_prepare_rebuilt_encoder(encoder)`` re-adds what training added (adapters).
    """

    _training_only_params: tuple = ()  # parameters only fit reads (a distillation teacher): save() writes None

    # ------------------------------------------------------ encoder state
    def _rebuildable(self) -> bool:
        """Whether the pretrained backbone can be rebuilt: from its name, or from the fitted model it started from."""
        return isinstance(self.backbone, (str, os.PathLike)) or getattr(self, "base_model_", None) is not None

    def _encoder_parts(self, encoder: nn.Module) -> tuple[dict[str, torch.Tensor], str | None]:
        """The encoder state to store, and the fingerprint of what is left out (None: nothing is)."""
        state = encoder.state_dict()
        frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad} if self._rebuildable() else set()
        stored = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items() if k not in frozen}
        return stored, (_fingerprint({k: state[k] for k in frozen}) if self._rebuildable() else None)

    def _rebuild_encoder(self, stored: dict[str, torch.Tensor], fingerprint: str | None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # rebuilding never draws on the caller's RNG
            torch.manual_seed(self.backbone_seed_)
            backbone = self._resolve_backbone()
            encoder = backbone.encoder
            self._prepare_rebuilt_encoder(encoder)
        if backbone.tokenizer is not None:
            self.tokenizer_ = backbone.tokenizer
        state = encoder.state_dict()
        frozen = set(state) - set(stored)
        if fingerprint is not None and _fingerprint({k: state[k] for k in frozen}) != fingerprint:
            raise ValueError(
                f"The backbone {self.backbone!r} no longer gives the weights this model was trained on "
                "(its files or library version changed). Load it where the original backbone is available."
            )
        encoder.load_state_dict(stored, strict=fingerprint is None)
        for name, param in encoder.named_parameters():
            param.requires_grad_(name not in frozen)
        return encoder.to(self.device_).eval()

    def _prepare_rebuilt_encoder(self, encoder: nn.Module) -> None:
        """Give a rebuilt pretrained ``encoder`` the structure training added to it (nothing by default)."""

    # ------------------------------------------------------------ pickle
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ may return __dict__ itself
        if not (self._rebuildable() and self.__sklearn_is_fitted__()):
            return state
        state["_encoder_state"] = self._encoder_parts(self._fitted_encoder())
        return self._without_encoder(state)

    def __setstate__(self, state: dict) -> None:
        encoder_state = state.pop("_encoder_state", None)
        super().__setstate__(state)
        if str(getattr(self, "device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            self.device_, self.num_workers_ = "cpu", 0
            self.precision_ = "fp32" if self.precision_ == "fp16" else self.precision_
        if encoder_state is not None:
            self._attach_encoder(self._rebuild_encoder(*encoder_state))

    # --------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted estimator to a directory: ``model.safetensors`` weights and ``config.json``.

        Only the backbone parameters that training changed (and the head) are written when the
        backbone is named by a string (it is rebuilt from its name on load); a user ``nn.Module``
        backbone is written in full. Read the directory back with :func:`sktransfer.load`.

        Parameters
        ----------
        path : str or path-like
            Directory to create (or overwrite files in).

        Returns
        -------
        path : Path
            The directory.
        """
        from safetensors.torch import save_file
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        stored, fingerprint = self._encoder_parts(self._fitted_encoder())
        tensors = {f"encoder.{k}": v for k, v in stored.items()}
        head = self._head_state()
        tensors.update({f"head.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in head.items()})
        save_file(tensors, str(path / _WEIGHTS))
        params = self.get_params(deep=False)
        params.update(dict.fromkeys(self._training_only_params))  # so that load() needs no teacher
        base = getattr(self, "base_model_", None)
        if base is not None:
            base.save(path / _BASE)
            if params["backbone"] is base:
                params.pop("backbone")  # load() passes the model read back from the sub-folder
        fitted = {k: v for k, v in vars(self).items() if _is_fitted_name(k) and k not in _NOT_SAVED}
        history = list(getattr(self, "history_", []))
        config = {
            "class": type(self).__name__,
            "params": {k: _to_json(v) for k, v in params.items() if _json_able(v)},
            "params_not_saved": sorted(k for k, v in params.items() if not _json_able(v)),
            "fitted": {k: _to_json(v) for k, v in fitted.items()},
            "history": _to_json(history) if _json_able(history) else [],
            "encoder_fingerprint": fingerprint,
            "base": None if base is None else _BASE,
            "versions": _versions(),
        }
        (path / _CONFIG).write_text(json.dumps(config, indent=1))
        return path

    def _load_weights(self, tensors: dict[str, torch.Tensor], fingerprint: str | None, history: list) -> None:
        self.device_ = resolve_device(self.device)
        self.precision_ = resolve_precision(self.precision, self.device_)
        self.num_workers_ = resolve_num_workers(self.num_workers, self.device_)
        encoder = self._rebuild_encoder({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}, fingerprint)
        with torch.random.fork_rng(devices=[]):
            self._restore(encoder, {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}, history)


def _is_fitted_name(name: str) -> bool:
    return name.isidentifier() and name.endswith("_") and not name.startswith("_")


_CONFIG_KEYS = {
    "class": str, "params": dict, "params_not_saved": list, "fitted": dict, "history": list, "versions": dict,
}


def _read_config(path: Path) -> dict:
    """``config.json`` parsed and checked for shape; a ValueError naming the file and the problem otherwise."""
    file = path / _CONFIG
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(file)!r} is not valid JSON ({err}); it was not written by save().") from err
    if not isinstance(config, dict):
        raise ValueError(f"{str(file)!r} must hold a JSON object, got {type(config).__name__}.")
    config.setdefault("base", None)  # absent from folders written before sequential transfer
    for key, kind in {**_CONFIG_KEYS, "encoder_fingerprint": (str, type(None)), "base": (str, type(None))}.items():
        if key not in config:
            raise ValueError(f"{str(file)!r} has no {key!r} entry; it was not written by save() or was edited.")
        if not isinstance(config[key], kind):
            raise ValueError(f"{str(file)!r}: the {key!r} entry has the wrong type ({type(config[key]).__name__}).")
    if config["base"] not in (None, _BASE):
        raise ValueError(f"{str(file)!r}: the 'base' entry must be {_BASE!r} or null; the file was edited.")
    bad = [k for k in config["fitted"] if not _is_fitted_name(k) or k in _NOT_SAVED]
    if bad or not all(isinstance(k, str) for k in config["params_not_saved"]):
        raise ValueError(f"{str(file)!r}: unexpected fitted attribute names {bad[:5]}; the file was edited.")
    return config


def _estimator_class(name: str, file: Path) -> type:
    """One of sktransfer's own estimator classes, by name; nothing is imported for a name it does not know."""
    from . import _image, _text

    classes = [cls for module in (_image, _text) for cls in vars(module).values()
               if isinstance(cls, type) and issubclass(cls, PersistenceMixin) and not cls.__name__.startswith("_")]
    # The bare class name; or, as older versions wrote it, the class's own module and name.
    known = {cls.__name__: cls for cls in classes} | {f"{cls.__module__}.{cls.__qualname__}": cls for cls in classes}
    if name not in known:
        raise ValueError(
            f"{str(file)!r} names the class {name!r}, which is not an sktransfer estimator; load() only builds "
            f"{sorted(cls.__name__ for cls in classes)}."
        )
    return known[name]


def load(path: str | os.PathLike, **params: Any):
    """Load an estimator written by ``save``; warns when library versions differ from the saving ones.

    Only sktransfer's own estimators are ever built: the folder's ``config.json`` is checked before
    anything is imported or constructed from it, and a malformed file, an unknown class, unknown
    parameters or weights that do not fit the model raise a ``ValueError`` that names the file.

    Parameters
    ----------
    path : str or path-like
        The directory ``save`` wrote.
    **params
        Constructor parameters to set: required for those that could not be saved as JSON (a user
        ``nn.Module`` backbone, a callable ``augment``), optional for others (e.g. ``device="cpu"``).

    Returns
    -------
    estimator
        The fitted estimator, ready to predict.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / _CONFIG).is_file() or not (path / _WEIGHTS).is_file():
        raise ValueError(f"{str(path)!r} is not a directory written by save(): {_CONFIG} or {_WEIGHTS} is missing.")
    config = _read_config(path)
    file = path / _CONFIG
    cls = _estimator_class(config["class"], file)
    names = set(cls._get_param_names())
    unknown = sorted((set(config["params"]) | set(config["params_not_saved"]) | set(params)) - names)
    if unknown:
        raise ValueError(f"{str(file)!r}: {cls.__name__} has no parameters {unknown}.")
    missing = [k for k in config["params_not_saved"] if k not in params]
    if missing:
        raise ValueError(f"These parameters could not be saved as JSON; pass them to load(): {missing}.")
    changed = {k: (v, now) for k, v in config["versions"].items() if (now := _versions().get(k)) != v}
    if changed:
        detail = ", ".join(f"{k} {v} -> {now}" for k, (v, now) in changed.items())
        warnings.warn(f"Loading a model saved with other library versions ({detail}).", UserWarning, stacklevel=2)
    base = load(path / _BASE) if config["base"] else None
    if base is not None and "backbone" not in config["params"]:
        params.setdefault("backbone", base)
    estimator = cls(**{**{k: _from_json(v) for k, v in config["params"].items()}, **params})
    try:
        if base is not None:
            estimator.base_model_ = base
        estimator._validate()
        tensors = load_file(str(path / _WEIGHTS))
        estimator.__dict__.update({k: _from_json(v) for k, v in config["fitted"].items()})
        estimator._load_weights(tensors, config["encoder_fingerprint"], _from_json(config["history"]))
    except (SafetensorError, KeyError, AttributeError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"Cannot load the model in {str(path)!r}: {type(err).__name__}: {err}") from err
    return estimator

"""Saving fitted estimators: small pickles and ``save``/``load`` directories (safetensors + JSON).

One policy for every estimator, embedders included. A backbone named by a string (packaged, timm,
torchvision, Hugging Face or local directory) is rebuilt from the registry on load, so only its
parameters that training changed (the trainable ones, and the buffers) are stored, with the head; a
fingerprint of the rest makes sure the rebuilt backbone is the one trained on. A user ``nn.Module``
backbone cannot be rebuilt from a name, so all of its weights are stored.

:func:`load` reads data, never code: ``config.json`` may only name one of sktransfer's own estimator
classes (they register themselves, :func:`register_estimator`), and is checked whole (JSON, keys, class,
parameter names) before anything is built from it. Nor does it trust the folder beyond the model:
it never reaches the network (a backbone not available locally raises), the estimator's
``backbone_identity_`` (which names its embeddings in the process-wide feature cache) comes from the
weights it loaded, never from the file, and no folder decides where predictions write (``cache_dir`` is
not saved: pass it to :func:`load`).
"""

from __future__ import annotations

import contextvars
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

from ._cache import weights_identity
from ._device import resolve_device, resolve_num_workers, resolve_precision

_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"
_VERSIONED = ("sktransfer", "torch", "timm", "transformers", "skorch", "scikit-learn", "safetensors")
_NOT_SAVED = {"net_", "encoder_", "history_", "tokenizer_", "device_", "precision_", "num_workers_", "base_model_",
              "backbone_identity_", "runtime_"}
_PARAMS_NOT_SAVED = {"cache_dir"}  # where predict writes: the caller decides it, never a folder
_RUNTIME = "runtime"  # the sub-folder that holds the compiled model of a ``runtime``
_BASE = "base"  # the sub-folder that holds the fitted model a model started from (sequential transfer)
_ESTIMATORS: dict[str, type] = {}  # the classes load() builds, by name: filled by register_estimator
_PARAMETER_OBJECTS: dict[str, type] = {}  # classes a saved parameter may hold: filled by register_parameter_object
_LOADING = contextvars.ContextVar("sktransfer_loading", default=False)


def loading() -> bool:
    """Whether :func:`load` is running in this thread: backbones then resolve from local files only."""
    return _LOADING.get()


def is_saved_model_dir(value: Any) -> bool:
    """Whether ``value`` names a folder written by an sktransfer estimator's ``save``."""
    if not isinstance(value, (str, os.PathLike)) or not os.path.isdir(value):
        return False
    config = os.path.join(value, _CONFIG)
    if not (os.path.isfile(config) and os.path.isfile(os.path.join(value, _WEIGHTS))):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(content, dict) and "params_not_saved" in content  # a Hugging Face folder has no such key


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


def register_parameter_object(cls: type) -> None:
    """Let ``cls`` (a scikit-learn-style object with ``get_params``, e.g. ``LoRA``) be a saved parameter value:
    ``config.json`` names the class and holds its parameters, and :func:`load` rebuilds only registered ones."""
    _PARAMETER_OBJECTS[cls.__name__] = cls


def _to_json(value: Any) -> Any:
    if type(value) in _PARAMETER_OBJECTS.values():
        return {"__object__": type(value).__name__, "params": _to_json(value.get_params(deep=False))}
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
        if "__object__" in value:
            cls = _PARAMETER_OBJECTS.get(value["__object__"])
            if cls is None or not isinstance(value.get("params"), dict):
                raise ValueError(f"config.json names the parameter object {value['__object__']!r}, which load() does "
                                 f"not build (it builds {sorted(_PARAMETER_OBJECTS)}); the file was edited.")
            try:
                return cls(**_from_json(value["params"]))
            except TypeError as err:
                raise ValueError(f"config.json: the {value['__object__']} parameters do not fit ({err}); the file "
                                 "was edited.") from err
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


def register_estimator(cls: type) -> None:
    """Record ``cls`` as one of the classes :func:`load` may build: every public sktransfer estimator with an
    input modality (``_modality``) calls this from ``__init_subclass__``."""
    if not cls.__name__.startswith("_") and hasattr(cls, "_modality") and cls.__module__.startswith(f"{__package__}."):
        _ESTIMATORS[cls.__name__] = cls


def is_estimator(value: Any) -> bool:
    """Whether ``value`` is an sktransfer estimator (an instance of a registered class)."""
    return isinstance(value, tuple(_ESTIMATORS.values()))


# The estimator hooks this module reads: ``_fitted_encoder()``, ``_without_encoder(state)`` (the pickled state
# minus the encoder), ``_attach_encoder(encoder)``, ``_head_state()``, ``_restore(encoder, head, history)``,
# ``_prepare_rebuilt_encoder(encoder)`` (re-adds what training added: adapters) and ``_training_only_params``
# (parameters only fit reads, a distillation teacher: save() writes None).


def rebuildable(estimator) -> bool:
    """Whether the pretrained backbone can be rebuilt: from its name, or from the fitted model it started from."""
    return isinstance(estimator.backbone, (str, os.PathLike)) or getattr(estimator, "base_model_", None) is not None


def weights_named(estimator) -> bool:
    """Whether the backbone's identity names its initial weights: pretrained ones, from a name or a fitted
    model (random weights and a user's module are not)."""
    return estimator.pretrained and not isinstance(estimator.backbone, nn.Module)


def _encoder_parts(estimator, encoder: nn.Module) -> tuple[dict[str, torch.Tensor], str | None]:
    """The encoder state to store, and the fingerprint of what is left out (None: nothing is)."""
    state = encoder.state_dict()
    named = rebuildable(estimator)
    frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad} if named else set()
    stored = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items() if k not in frozen}
    return stored, (_fingerprint({k: state[k] for k in frozen}) if named else None)


def _rebuild_encoder(estimator, stored: dict[str, torch.Tensor], fingerprint: str | None) -> tuple[nn.Module, str]:
    """The encoder rebuilt with the ``stored`` tensors, and the identity of the weights it then holds."""
    with torch.random.fork_rng(devices=[]):  # rebuilding never draws on the caller's RNG
        torch.manual_seed(estimator.backbone_seed_)
        backbone = estimator._resolve_backbone()
        encoder = backbone.encoder
        estimator._prepare_rebuilt_encoder(encoder)
    if backbone.tokenizer is not None:
        estimator.tokenizer_ = backbone.tokenizer
    state = encoder.state_dict()
    frozen = set(state) - set(stored)
    if fingerprint is not None and _fingerprint({k: state[k] for k in frozen}) != fingerprint:
        raise ValueError(
            f"The backbone {estimator.backbone!r} no longer gives the weights this model was trained on "
            "(its files or library version changed). Load it where the original backbone is available."
        )
    # The backbone's name stands for the weights only where the stored tensors change none of them.
    pristine = fingerprint is not None and all(torch.equal(state[k], v) for k, v in stored.items() if k in state)
    encoder.load_state_dict(stored, strict=fingerprint is None)
    for name, param in encoder.named_parameters():
        param.requires_grad_(name not in frozen)
    identity = weights_identity(backbone.identity, named=pristine and weights_named(estimator))
    return encoder.to(estimator.device_).eval(), identity


def pickled_state(estimator, state: dict) -> dict:
    """The state to pickle: ``state`` (a copy of the estimator's) without what the backbone's name rebuilds."""
    if not (rebuildable(estimator) and estimator.__sklearn_is_fitted__()):
        return state
    state["_encoder_state"] = _encoder_parts(estimator, estimator._fitted_encoder())
    return estimator._without_encoder(state)


def unpickled(estimator, encoder_state: tuple | None) -> None:
    """Finish unpickling: fall back to the CPU without CUDA, and rebuild the encoder that was left out."""
    if str(getattr(estimator, "device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        estimator.device_, estimator.num_workers_ = "cpu", 0
        estimator.precision_ = "fp32" if estimator.precision_ == "fp16" else estimator.precision_
    if encoder_state is not None:
        encoder, _ = _rebuild_encoder(estimator, *encoder_state)  # a pickle is code, trusted: it keeps its identity
        estimator._attach_encoder(encoder)


def save(estimator, path: str | os.PathLike) -> Path:
    """Write the fitted ``estimator`` to the directory ``path`` (see the estimators' ``save``)."""
    from safetensors.torch import save_file
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    stored, fingerprint = _encoder_parts(estimator, estimator._fitted_encoder())
    tensors = {f"encoder.{k}": v for k, v in stored.items()}
    head = estimator._head_state()
    tensors.update({f"head.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in head.items()})
    save_file(tensors, str(path / _WEIGHTS))
    session = getattr(estimator, "runtime_", None)
    if session is not None:
        (path / _RUNTIME).mkdir(exist_ok=True)
        for name, data in session.files.items():
            (path / _RUNTIME / name).write_bytes(data)
    params = {k: v for k, v in estimator.get_params(deep=False).items() if k not in _PARAMS_NOT_SAVED}
    params.update(dict.fromkeys(estimator._training_only_params))  # so that load() needs no teacher
    base = getattr(estimator, "base_model_", None)
    if base is not None:
        base.save(path / _BASE)
        if params["backbone"] is base:
            params.pop("backbone")  # load() passes the model read back from the sub-folder
    fitted = {k: v for k, v in vars(estimator).items() if _is_fitted_name(k) and k not in _NOT_SAVED}
    history = list(getattr(estimator, "history_", []))
    config = {
        "class": type(estimator).__name__,
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


def _load_weights(estimator, tensors: dict[str, torch.Tensor], fingerprint: str | None, history: list) -> None:
    estimator.device_ = resolve_device(estimator.device)
    estimator.precision_ = resolve_precision(estimator.precision, estimator.device_)
    estimator.num_workers_ = resolve_num_workers(estimator.num_workers, estimator.device_)
    encoder, estimator.backbone_identity_ = _rebuild_encoder(
        estimator, {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}, fingerprint)
    with torch.random.fork_rng(devices=[]):
        estimator._restore(encoder, {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}, history)


def _load_runtime(estimator, folder: Path) -> None:
    """The compiled model ``save`` wrote for the estimator's ``runtime``, or a ValueError saying why there is none."""
    from ._runtimes import resolve_runtime

    runtime = resolve_runtime(estimator.runtime)
    if runtime is None:
        estimator.runtime_ = None
        return
    if not folder.is_dir():
        raise ValueError(f"runtime={estimator.runtime!r}, but the model was saved without one: fit it with "
                         "runtime= set (the export is calibrated on the fit's rows), or load it without runtime=.")
    estimator.runtime_ = runtime._session({file.name: file.read_bytes() for file in sorted(folder.iterdir())})


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
    for key, kind in {**_CONFIG_KEYS, "encoder_fingerprint": (str, type(None)), "base": (str, type(None))}.items():
        if key not in config:
            raise ValueError(f"{str(file)!r} has no {key!r} entry; it was not written by save() or was edited.")
        if not isinstance(config[key], kind):
            raise ValueError(f"{str(file)!r}: the {key!r} entry has the wrong type ({type(config[key]).__name__}).")
    if config["base"] not in (None, _BASE):
        raise ValueError(f"{str(file)!r}: the 'base' entry must be {_BASE!r} or null; the file was edited.")
    where = sorted(_PARAMS_NOT_SAVED & {*config["params"], *config["params_not_saved"]})
    if where:
        raise ValueError(f"{str(file)!r} sets {where}, which save() never writes: load() never writes where a file "
                         "says; pass cache_dir= to load() to keep embeddings on disk.")
    bad = [k for k in config["fitted"] if not _is_fitted_name(k) or k in _NOT_SAVED]
    if bad or not all(isinstance(k, str) for k in config["params_not_saved"]):
        raise ValueError(f"{str(file)!r}: unexpected fitted attribute names {bad[:5]}; the file was edited.")
    return config


def _estimator_class(name: str, file: Path) -> type:
    """One of sktransfer's own estimator classes, by name; nothing is imported for a name it does not know."""
    if name not in _ESTIMATORS:
        raise ValueError(
            f"{str(file)!r} names the class {name!r}, which is not an sktransfer estimator; load() only builds "
            f"{sorted(_ESTIMATORS)}."
        )
    return _ESTIMATORS[name]


def load(path: str | os.PathLike, **params: Any):
    """Load an estimator written by ``save``; warns when library versions differ from the saving ones.

    Only sktransfer's own estimators are ever built: the folder's ``config.json`` is checked before
    anything is imported or constructed from it, and a malformed file, an unknown class, unknown
    parameters or weights that do not fit the model raise a ``ValueError`` that names the file.

    Loading never reaches the network: the backbone the folder names must be available locally
    (packaged with sktransfer, in the local Hugging Face or torch hub cache, or a local directory),
    else a ``ValueError`` says so. The estimator's ``backbone_identity_``, which names its embeddings
    in the process-wide feature cache, is derived from the weights loaded, never read from the file.
    The folder never says where embeddings are written: ``cache_dir`` is the caller's to pass.

    Parameters
    ----------
    path : str or path-like
        The directory ``save`` wrote.
    **params
        Constructor parameters to set: required for those that could not be saved as JSON (a user
        ``nn.Module`` backbone, a callable ``augment``), optional for others (e.g. ``device="cpu"``,
        ``cache_dir=``, or ``backbone=`` a local directory holding the same pretrained weights).

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
    token = _LOADING.set(True)
    try:
        if base is not None:
            estimator.base_model_ = base
        estimator._validate()
        tensors = load_file(str(path / _WEIGHTS))
        estimator.__dict__.update({k: _from_json(v) for k, v in config["fitted"].items()})
        _load_weights(estimator, tensors, config["encoder_fingerprint"], _from_json(config["history"]))
        _load_runtime(estimator, path / _RUNTIME)
    except (SafetensorError, KeyError, AttributeError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"Cannot load the model in {str(path)!r}: {type(err).__name__}: {err}") from err
    finally:
        _LOADING.reset(token)
    return estimator

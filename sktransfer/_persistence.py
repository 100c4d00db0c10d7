"""Saving fitted estimators: small pickles, ``save``/``load`` directories (safetensors + JSON) and ONNX export.

A backbone named by a string (packaged, timm, torchvision, Hugging Face or local directory) is rebuilt
from the registry on load, so only its parameters that training changed (the trainable ones, and the
buffers) are stored; a fingerprint of the rest makes sure the rebuilt backbone is the one trained on.
A user ``nn.Module`` backbone cannot be rebuilt from a name, so all of its weights are stored.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.history import History
from torch import nn

from ._adapters import restore_adapter
from ._adapters import restore_adapter
from ._device import resolve_device, resolve_num_workers, resolve_precision
from ._heads import Head, TransferModule

_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"
_VERSIONED = ("sktransfer", "torch", "timm", "transformers", "skorch", "scikit-learn", "safetensors")
_NOT_SAVED = {"net_", "history_", "tokenizer_", "device_", "precision_", "num_workers_"}


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


class _ExportModel(nn.Module):
    """The fitted model as one graph: raw inputs to probabilities (classifiers) or predictions (regressors)."""

    def __init__(self, module: TransferModule, output: str, mean=None, scale=None):
        super().__init__()
        self.module, self.output = module, output
        self.register_buffer("mean", torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(1.0 if scale is None else scale, dtype=torch.float32))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        encoder = self.module.encoder
        features = encoder(*inputs)
        out = self.module.head(features)
        if self.output == "softmax":
            return torch.softmax(out, dim=1)
        if self.output == "sigmoid":
            return torch.sigmoid(out)
        return out * self.scale + self.mean


class PersistenceMixin:
    """Pickling, ``save``, ``export_onnx`` for :class:`~sktransfer._training.TrainableEstimator`."""

    # ------------------------------------------------------ encoder state
    def _rebuildable(self) -> bool:
        return isinstance(self.backbone, (str, os.PathLike))

    def _encoder_parts(self, encoder: nn.Module) -> tuple[dict[str, torch.Tensor], str | None]:
        """The encoder state to store, and the fingerprint of what is left out (None: nothing is)."""
        state = encoder.state_dict()
        frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad} if self._rebuildable() else set()
        stored = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items() if k not in frozen}
        return stored, (_fingerprint({k: state[k] for k in frozen}) if self._rebuildable() else None)

    def _rebuild_encoder(self, stored: dict[str, torch.Tensor], fingerprint: str | None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.backbone_seed_)
            backbone = self._resolve_backbone()
        encoder = backbone.encoder
        restore_adapter(self, encoder)
        if backbone.tokenizer is not None:
            self.tokenizer_ = backbone.tokenizer
        restore_adapter(self, encoder)
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

    # ------------------------------------------------------------ pickle
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ may return __dict__ itself
        net = state.get("net_")
        if net is None or not self._rebuildable():
            return state
        # A shallow copy of the net whose module has no encoder; the optimizer is left out (a later fit makes one).
        stub = TransferModule(nn.Identity(), net.module_.head)
        light = object.__new__(type(net))
        light.__dict__.update({k: v for k, v in net.__dict__.items() if k != "optimizer_"}, module=stub, module_=stub)
        state["net_"] = light
        state["_encoder_state"] = self._encoder_parts(net.module_.encoder)
        return state

    def __setstate__(self, state: dict) -> None:
        encoder_state = state.pop("_encoder_state", None)
        super().__setstate__(state)
        if str(getattr(self, "device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            self.device_, self.num_workers_ = "cpu", 0
            self.precision_ = "fp32" if self.precision_ == "fp16" else self.precision_
            self.net_.precision = self.precision_
        if encoder_state is not None:
            self.net_.module_.encoder = self._rebuild_encoder(*encoder_state)

    # --------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted estimator to a directory: ``model.safetensors`` weights and ``config.json``.

        Only the backbone parameters that training changed are written when the backbone is named by a
        string (it is rebuilt from its name on load); a user ``nn.Module`` backbone is written in full.

        Parameters
        ----------
        path : str or path-like
            Directory to create (or overwrite files in).

        Returns
        -------
        path : Path
            The directory; read it back with :func:`sktransfer.load`.
        """
        from safetensors.torch import save_file
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        module = self.net_.module_
        stored, fingerprint = self._encoder_parts(module.encoder)
        tensors = {f"encoder.{k}": v for k, v in stored.items()}
        tensors.update({f"head.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in module.head.state_dict().items()})
        save_file(tensors, str(path / _WEIGHTS))
        params = self.get_params(deep=False)
        fitted = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_") and k not in _NOT_SAVED}
        config = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": {k: _to_json(v) for k, v in params.items() if _json_able(v)},
            "params_not_saved": sorted(k for k, v in params.items() if not _json_able(v)),
            "fitted": {k: _to_json(v) for k, v in fitted.items()},
            "history": _to_json(list(self.history_)) if _json_able(list(self.history_)) else [],
            "encoder_fingerprint": fingerprint,
            "versions": _versions(),
        }
        (path / _CONFIG).write_text(json.dumps(config, indent=1))
        return path

    def _restore(self, tensors: dict[str, torch.Tensor], fingerprint: str | None, history: list) -> None:
        self.device_ = resolve_device(self.device)
        self.precision_ = resolve_precision(self.precision, self.device_)
        self.num_workers_ = resolve_num_workers(self.num_workers, self.device_)
        encoder = self._rebuild_encoder({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}, fingerprint)
        head = Head(self.n_features_out_, self.n_outputs_, tuple(self.head_hidden), self.dropout)
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        module = TransferModule(encoder, head).to(self.device_).eval()
        net = self._make_net(module, self.blocks_, 1, None)
        net.initialize()
        net.history = History(history)
        self.net_, self.history_ = net, net.history

    # -------------------------------------------------------------- ONNX
    def export_onnx(self, path: str | os.PathLike) -> Path:
        """Export the fitted model (inputs to probabilities, or to predictions for a regressor) to ONNX.

        Images: one input ``pixel_values`` of shape (N, 3, H, W), preprocessed as the backbone's
        ``data_config_`` says. Texts: inputs ``input_ids`` and ``attention_mask``; the tokenizer is saved
        beside the ONNX file (``save_pretrained``), so the same tokenisation can be reproduced.

        Parameters
        ----------
        path : str or path-like
            The ``.onnx`` file to write.

        Returns
        -------
        path : Path
        """
        import copy

        from sklearn.utils.validation import check_is_fitted

        try:
            importlib.import_module("onnx")
        except ImportError as err:
            raise ImportError("export_onnx needs the onnx package: pip install sktransfer[onnx]") from err
        check_is_fitted(self)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(self, "classes_"):
            output, mean, scale = ("sigmoid" if self.multilabel_ else "softmax"), None, None
        else:
            output, mean, scale = "identity", self.y_mean_, self.y_scale_
        model = _ExportModel(copy.deepcopy(self.net_.module_).cpu().float(), output, mean, scale).eval()
        if self._is_text:
            names = ["input_ids", "attention_mask"]
            example = dict(self.tokenizer_(["a b", "c"], padding=True, return_tensors="pt"))
            inputs = tuple(example[n] for n in names)
            axes = {n: {0: "batch", 1: "sequence"} for n in names}
            self.tokenizer_.save_pretrained(path.parent)
        else:
            names = ["pixel_values"]
            inputs = (torch.zeros(2, *self.data_config_["input_size"]),)
            axes = {"pixel_values": {0: "batch"}}
        output_name = "predictions" if output == "identity" else "probabilities"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, inputs, str(path), input_names=names, output_names=[output_name],
                dynamic_axes={**axes, output_name: {0: "batch"}}, opset_version=17, dynamo=False,
            )
        return path


def load(path: str | os.PathLike, **params: Any):
    """Load an estimator written by ``save``; warns when library versions differ from the saving ones.

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
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / _CONFIG).is_file() or not (path / _WEIGHTS).is_file():
        raise ValueError(f"{str(path)!r} is not a directory written by save(): {_CONFIG} or {_WEIGHTS} is missing.")
    config = json.loads((path / _CONFIG).read_text())
    missing = [k for k in config["params_not_saved"] if k not in params]
    if missing:
        raise ValueError(f"These parameters could not be saved as JSON; pass them to load(): {missing}.")
    changed = {k: (v, now) for k, v in config["versions"].items() if (now := _versions().get(k)) != v}
    if changed:
        detail = ", ".join(f"{k} {v} -> {now}" for k, (v, now) in changed.items())
        warnings.warn(f"Loading a model saved with other library versions ({detail}).", UserWarning, stacklevel=2)
    module_name, _, class_name = config["class"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    estimator = cls(**{**{k: _from_json(v) for k, v in config["params"].items()}, **params})
    estimator.__dict__.update({k: _from_json(v) for k, v in config["fitted"].items()})
    estimator._restore(load_file(str(path / _WEIGHTS)), config["encoder_fingerprint"], _from_json(config["history"]))
    return estimator

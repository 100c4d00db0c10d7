"""ONNX export of a fitted classifier or regressor: raw model inputs to probabilities or predictions."""

from __future__ import annotations

import copy
import importlib
import os
import warnings
from pathlib import Path

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._heads import TransferModule


class _ExportModel(nn.Module):
    """The fitted model as one graph: raw inputs to probabilities (classifiers) or predictions (regressors)."""

    def __init__(self, module: TransferModule, output: str, mean=None, scale=None, sizes: list[int] | None = None):
        super().__init__()
        self.module, self.output, self.sizes = module, output, sizes
        self.register_buffer("mean", torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(1.0 if scale is None else scale, dtype=torch.float32))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.module.head(self.module.encoder(*inputs))
        if self.sizes is not None:  # multi-output: one softmax per output's slice
            return tuple(torch.softmax(part, dim=1) for part in out.split(self.sizes, dim=1))
        if self.output == "softmax":
            return torch.softmax(out, dim=1)
        if self.output == "sigmoid":
            return torch.sigmoid(out)
        return out * self.scale + self.mean


def export_onnx(estimator, path: str | os.PathLike) -> Path:
    """Write ``estimator``'s fitted model to the ONNX file ``path`` (see ``export_onnx`` of the estimators).

    The task's ``_export_output()`` and ``_export_splits()`` say what the graph returns, the
    modality's ``_export_inputs(folder)`` what it takes.
    """
    try:
        importlib.import_module("onnx")
    except ImportError as err:
        raise ImportError("export_onnx needs the onnx package: pip install sktransfer[onnx]") from err
    check_is_fitted(estimator)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    output, mean, scale = estimator._export_output()
    splits = estimator._export_splits()
    sizes = None if splits is None else [size for _, size in splits]
    model = _ExportModel(copy.deepcopy(estimator.net_.module_).cpu().float(), output, mean, scale, sizes).eval()
    output_name = "predictions" if output == "identity" else "probabilities"
    outputs = [output_name] if splits is None else [f"{output_name}_{name}" for name, _ in splits]
    return _export(estimator, model, path, outputs)


def encoder_onnx(estimator, encoder: nn.Module, path: Path) -> Path:
    """Write ``encoder`` (``estimator``'s fitted backbone) to the ONNX file ``path``: raw inputs to the pooled
    ``embeddings``; a ValueError says why when it does not export."""
    model = copy.deepcopy(encoder).cpu().float().eval()
    try:
        return _export(estimator, model, path, ["embeddings"])
    except Exception as err:  # the exporter raises many kinds; the user needs the reason and the way out
        raise ValueError(f"The backbone could not be exported to ONNX for runtime={estimator.runtime!r} "
                         f"({type(err).__name__}: {err}). Use runtime=None.") from err


def _export(estimator, model: nn.Module, path: Path, outputs: list[str]) -> Path:
    """``model`` traced on the modality's example inputs, batch (and sequence) axes dynamic, written to ``path``."""
    names, inputs, axes = estimator._export_inputs(path.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, inputs, str(path), input_names=names, output_names=outputs,
            dynamic_axes={**axes, **{name: {0: "batch"} for name in outputs}}, opset_version=17, dynamo=False,
        )
    return path

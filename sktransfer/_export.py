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

    def __init__(self, module: TransferModule, output: str, mean=None, scale=None):
        super().__init__()
        self.module, self.output = module, output
        self.register_buffer("mean", torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(1.0 if scale is None else scale, dtype=torch.float32))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.module.head(self.module.encoder(*inputs))
        if self.output == "softmax":
            return torch.softmax(out, dim=1)
        if self.output == "sigmoid":
            return torch.sigmoid(out)
        return out * self.scale + self.mean


class ExportMixin:
    """``export_onnx``. Hooks: the task's ``_export_output()`` and the modality's ``_export_inputs(folder)``."""

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
            The file written.
        """
        try:
            importlib.import_module("onnx")
        except ImportError as err:
            raise ImportError("export_onnx needs the onnx package: pip install sktransfer[onnx]") from err
        check_is_fitted(self)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        output, mean, scale = self._export_output()
        model = _ExportModel(copy.deepcopy(self.net_.module_).cpu().float(), output, mean, scale).eval()
        names, inputs, axes = self._export_inputs(path.parent)
        output_name = "predictions" if output == "identity" else "probabilities"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, inputs, str(path), input_names=names, output_names=[output_name],
                dynamic_axes={**axes, output_name: {0: "batch"}}, opset_version=17, dynamo=False,
            )
        return path

"""Opt-in int8 dynamic quantisation of a fitted estimator's backbone, for faster inference on CPU.

Dynamic quantisation stores the weights of every ``nn.Linear`` in int8, one scale per output channel,
and quantises each layer's input on the fly (``torch.ao.quantization.quantize_dynamic``). Transformers
spend most of their time in those layers, so text backbones gain most; convolutional image backbones
have few Linear layers and gain little. It changes the numbers: embeddings and predictions move, so it is never applied
implicitly. Measured with all-MiniLM-L6-v2 on SST-2 (2,000 train phrases, 872 test sentences, one
thread): 2.7x the texts/s; cosine similarity to the float32 embeddings median 0.973 (min 0.90; 0.937
and 0.72 with one scale per tensor); logistic regression on the embeddings 76.1 % -> 75.5 %, a float32
head on int8 embeddings 74.4 % (``benchmarks/inference.py`` repeats the measurement).
"""

from __future__ import annotations

import warnings
from typing import TypeVar

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

E = TypeVar("E")

INT8_DYNAMIC = "int8-dynamic"


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` holds int8 dynamically quantised Linear layers."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return any(isinstance(m, DynamicQuantizedLinear) for m in module.modules())


def quantize_dynamic_int8(module: nn.Module) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` of ``module`` by its int8 dynamically quantised version
    (weights quantised per output channel).

    Parameters
    ----------
    module : torch.nn.Module
        A CPU module in eval mode (quantised layers do not train).

    Returns
    -------
    module : torch.nn.Module
        The same module, quantised.
    """
    with warnings.catch_warnings():
        # torch deprecates its quantised tensor types in favour of torchao; they still work in this release.
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*deprecated", category=DeprecationWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def quantize_int8(estimator: E) -> E:
    """Quantise a fitted estimator's backbone to int8 (dynamic, Linear layers only) for CPU inference.

    ``transform``, ``predict`` and ``predict_proba`` then run the quantised backbone; the head stays
    in float32. The estimator's ``backbone_identity_`` changes, so cached float32 embeddings are never
    served for it. Quantise after fitting, on ``device="cpu"``. A new ``fit`` starts again from the
    float32 pretrained weights; a quantised estimator cannot be saved nor trained further
    (``warm_start``): save the float32 one and quantise after loading.

    Parameters
    ----------
    estimator : fitted sktransfer estimator
        Fitted on the CPU.

    Returns
    -------
    estimator
        The same estimator, quantised (a no-op when it already is).

    Examples
    --------
    >>> from sktransfer import PretrainedTextEmbedder, quantize_int8
    >>> embedder = quantize_int8(PretrainedTextEmbedder(device="cpu").fit(["a text"]))
    >>> embedder.transform(["a text", "another"]).shape
    (2, 384)
    """
    check_is_fitted(estimator)
    if estimator.device_ != "cpu":
        raise ValueError(f"int8 dynamic quantisation runs on the CPU; this estimator is on {estimator.device_!r}.")
    if getattr(estimator, "runtime_", None) is not None:
        raise ValueError(f"This estimator runs inference with runtime={estimator.runtime!r}; quantise with the "
                         "runtime's own tools instead: runtime=ONNXRuntime(int8=True) or OpenVINO(int8=True).")
    encoder = estimator._fitted_encoder()
    if is_quantized(encoder):
        return estimator
    quantize_dynamic_int8(encoder.eval())
    estimator.backbone_identity_ = f"{estimator.backbone_identity_}:{INT8_DYNAMIC}"
    return estimator

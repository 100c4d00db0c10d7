"""BatchNorm folded into the convolution before it, for inference: the same function, fewer passes over memory.

In inference a BatchNorm is a fixed per-channel scale and shift, so it can be merged into the weights
and bias of the convolution that feeds it (what ONNX Runtime, TensorRT and TorchScript's ``freeze`` do).
PyTorch's eager CPU kernels run it as a separate pass over every feature map instead: folding it makes
EfficientNet-Lite0's forward 1.3-1.5x faster on 2 CPU cores, its outputs equal within float32 rounding
(3e-6 relative). The folded model is a copy, used for inference only: training always sees the
module itself.
"""

from __future__ import annotations

import copy
import functools
import weakref

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

TOLERANCE = 1e-4  # largest relative L2 difference accepted between folded and original outputs

_FOLDED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module | None]] = weakref.WeakKeyDictionary()


@functools.cache
def _norm_types() -> tuple[type, ...]:
    """Plain ``BatchNorm2d`` and timm's ``BatchNormAct2d`` (BatchNorm, dropout, activation); timm imported once."""
    from timm.layers import BatchNormAct2d

    return nn.BatchNorm2d, BatchNormAct2d


def _foldable(module: nn.Module) -> bool:
    """A BatchNorm2d of :func:`_norm_types` in inference form (eval mode, running statistics)."""
    return type(module) in _norm_types() and not module.training and module.running_mean is not None


def _state_signature(module: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (an optimiser step, a load)."""
    return tuple((t.data_ptr(), 0 if t.is_inference() else t._version)  # inference tensors keep no version
                 for t in [*module.parameters(), *module.buffers()])


def _forward(module: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.autocast(next(iter(inputs.values())).device.type, enabled=False):
        return module(**inputs).float()


def _fold(module: nn.Module, example: dict[str, torch.Tensor]) -> nn.Module:
    """A folded copy of ``module`` (in eval mode), or ``module`` when nothing folds or the check fails."""
    produced, pairs = {}, []

    def after_conv(conv, _, output):
        produced[id(output)] = (conv, output)  # the output is kept alive so that its id is not reused

    def before_norm(norm, inputs):
        conv, output = produced.get(id(inputs[0]), (None, None))
        if output is inputs[0]:
            pairs.append((conv, norm))

    hooks = [m.register_forward_hook(after_conv) for m in module.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(before_norm) for m in module.modules() if _foldable(m)]
    try:
        with torch.inference_mode():
            reference = _forward(module, example)
    finally:
        for hook in hooks:
            hook.remove()
    if not pairs:
        return module
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, even when called in inference mode
        folded = copy.deepcopy(module)
        copies = dict(zip([id(m) for m in module.modules()], folded.modules()))
        names = {m: name for name, m in folded.named_modules()}
        for conv, norm in dict((id(norm), (conv, norm)) for conv, norm in pairs).values():
            conv_copy, norm_copy = copies[id(conv)], copies[id(norm)]
            fused = fuse_conv_bn_eval(conv_copy, norm_copy)
            conv_copy.weight, conv_copy.bias = fused.weight, fused.bias
            parent, _, attribute = names[norm_copy].rpartition(".")
            setattr(folded.get_submodule(parent), attribute,
                    nn.Sequential(norm_copy.drop, norm_copy.act) if hasattr(norm_copy, "act") else nn.Identity())
    with torch.inference_mode():
        output = _forward(folded, example)
    difference = torch.linalg.vector_norm(output - reference) / torch.linalg.vector_norm(reference).clamp_min(1e-12)
    return folded if difference <= TOLERANCE else module


def folded_for_inference(module: nn.Module, example: dict[str, torch.Tensor]) -> nn.Module:
    """``module`` (in eval mode) with every BatchNorm that reads a convolution's output folded into it.

    A copy: ``module`` is not changed. It is kept while ``module``'s weights stay as they are, so
    repeated calls cost nothing; any change to them (an optimiser step, ``load_state_dict``) folds
    anew. Not while tracing or compiling (ONNX export, ``torch.compile``): they see ``module``.
    ``example`` (keyword inputs of one or a few items) checks the copy: where its outputs differ
    from ``module``'s by more than ``TOLERANCE`` (relative L2), or nothing folds (transformers, networks
    without BatchNorm), ``module`` itself is returned.
    """
    if (module.training or torch.jit.is_tracing() or torch.compiler.is_compiling()
            or not any(_foldable(m) for m in module.modules())):
        return module
    signature = _state_signature(module)
    kept = _FOLDED.get(module)
    if kept is None or kept[0] != signature:
        folded = _fold(module, example)
        kept = _FOLDED[module] = (signature, None if folded is module else folded)  # no reference to the key
    return module if kept[1] is None else kept[1]

"""``keep_blocks``: keep only a backbone's first ``k`` blocks; the later ones are removed, not only frozen.

Blocks are counted as :mod:`~sktransfer._freezing` counts them, stem or embeddings first, so
``n_backbone_blocks_ == k`` afterwards and ``freeze_layers`` counts the kept blocks. Every module
whose parameters all belong to the dropped blocks leaves the encoder (the trailing members of a
``Sequential`` or ``ModuleList`` are deleted, any other module is replaced by one that passes its input
on), so the encoder has fewer parameters, runs faster and saves smaller files:

- a transformers model keeps its embeddings and first ``k - 1`` layers (``config.num_hidden_layers``
  follows); the pooler and any final norm belong to the last block and go with it, so the token
  states are exactly the full model's ``hidden_states[k - 1]``;
- an image model's output is the pooled output of its last kept block: pooled as the model's own
  head or forward pools it (global average pooling for convolutional networks; a timm model's final
  1x1 convolution belongs to the last block), else by a global average pooling added here
  (:class:`PooledImageEncoder`) when the cut model returns a feature map.

Each cut is checked numerically on a probe input against the output of the last kept block in the
intact network; a layout where that does not hold (a forward that is not a chain of its blocks,
layers without parameters after the last kept block) raises a ValueError rather than silently
computing something else. The identity gains ``:keep_blocks=k``, so the feature cache never mixes
the embeddings of a cut backbone with the full one's.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ._backbones import Backbone, ImageEncoder, TextEncoder

_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


class PooledImageEncoder(ImageEncoder):
    """An image encoder whose (cut) model ends in a (N, C, H, W) feature map: global average pooling, then flatten."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 4:
            out = out.mean(dim=(2, 3))
        return torch.flatten(out, 1)


class Removed(nn.Module):
    """Stands where a removed module was: returns its first input unchanged (any other arguments are ignored)."""

    def forward(self, x, *args, **kwargs):
        return x


def keep_first_blocks(backbone: Backbone, k: int | None) -> Backbone:
    """Return ``backbone`` cut to its first ``k`` blocks (``None``: the backbone itself, whole).

    The encoder is changed in place: pass a private copy (the registry and fitted models hand out
    copies). Keeping every block changes nothing, identity included (the outputs are the same).
    """
    if k is None:
        return backbone
    n = len(backbone.blocks)
    if k > n:
        raise ValueError(
            f"keep_blocks={k}, but this backbone has only n_backbone_blocks={n} blocks (stem or embeddings "
            f"included): use keep_blocks between 1 and {n}, or None to keep the whole backbone."
        )
    if k == n:
        return backbone
    if isinstance(backbone.encoder, TextEncoder):
        encoder, width = _cut_transformer(backbone.encoder, backbone.blocks, k), backbone.num_features
    elif isinstance(backbone.encoder, ImageEncoder):
        encoder, width = _cut_image(backbone.encoder, backbone.blocks, k, backbone.data_config)
    else:
        raise ValueError(
            f"keep_blocks cannot cut a {type(backbone.encoder).__name__} encoder; use keep_blocks=None."
        )
    return dataclasses.replace(
        backbone, encoder=encoder, num_features=width, blocks=[list(block) for block in backbone.blocks[:k]],
        identity=f"{backbone.identity}:keep_blocks={k}",
    )


# ------------------------------------------------------------------------------------- removing modules
def _covering(module: nn.Module, names: set[str], prefix: str = "") -> list[str]:
    """The largest submodules (in registration order) whose parameters are all in ``names``."""
    out = []
    for name, child in module.named_children():
        full = prefix + name
        params = [f"{full}.{p}" for p, _ in child.named_parameters()]
        inside = [p in names for p in params]
        if params and all(inside):
            out.append(full)
        elif any(inside):
            out.extend(_covering(child, names, full + "."))
    return out


def _remove(root: nn.Module, names: list[str]) -> None:
    """Delete the modules ``names``: trailing members of a Sequential/ModuleList go, others pass their input on."""
    for full in reversed(names):  # last first, so that a container's trailing members are deleted in turn
        parent_name, _, attr = full.rpartition(".")
        parent = root.get_submodule(parent_name)
        if isinstance(parent, (nn.Sequential, nn.ModuleList)) and list(parent._modules)[-1] == attr:
            del parent._modules[attr]
        else:
            setattr(parent, attr, Removed())


def _modules_to_remove(encoder: nn.Module, blocks: list[list[str]], k: int) -> list[str]:
    dropped = {name for block in blocks[k:] for name in block}
    names = _covering(encoder, dropped)
    covered = {f"{m}.{p}" for m in names for p, _ in encoder.get_submodule(m).named_parameters()}
    shared = sorted(dropped - covered)
    if shared:
        raise ValueError(
            f"keep_blocks={k} cannot remove the later blocks of this backbone: parameters such as {shared[:3]} sit "
            "in modules that the kept blocks use too. Use another keep_blocks, or None."
        )
    return names


def _not_exact(k: int, n: int, last: str, detail: str) -> ValueError:
    return ValueError(
        f"keep_blocks={k} cannot cut this backbone exactly after its block {k - 1} (ending with {last!r}): {detail} "
        "Its forward is not a plain chain of its blocks there (or layers without parameters follow that block). "
        f"Use another keep_blocks between 1 and {n} (n_backbone_blocks={n}), keep_blocks=None, "
        "or pass a backbone module you cut yourself."
    )


# ---------------------------------------------------------------------------------------------- images
def _cut_image(encoder: ImageEncoder, blocks: list[list[str]], k: int, data_config: dict) -> tuple[nn.Module, int]:
    removed = _modules_to_remove(encoder, blocks, k)
    last = _covering(encoder, set(blocks[k - 1]))[-1]
    size = data_config.get("input_size", (3, 224, 224))
    probe = torch.randn(2, *size, generator=torch.Generator().manual_seed(0)).to(_device(encoder))
    captured = []  # a copy: a later in-place operation (ReLU(inplace=True)) must not change it

    def capture(module, args, out):
        captured.append((out[0] if isinstance(out, (tuple, list)) else out).clone())

    handle = encoder.get_submodule(last).register_forward_hook(capture)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            encoder(probe)
    finally:
        handle.remove()
    if not captured:
        raise _not_exact(k, len(blocks), last, "its forward never runs that module.")
    block_out = captured[-1]
    model = encoder.model
    _remove(encoder, removed)
    try:
        with torch.inference_mode():
            raw = model(probe)
            raw = raw[0] if isinstance(raw, (tuple, list)) else raw
            cut = PooledImageEncoder(model) if raw.ndim == 4 else encoder
            got = cut(probe)
            expected = _pooled_candidates(model, block_out)
    except Exception as err:  # a forward that needed a removed module
        raise _not_exact(k, len(blocks), last, f"the cut network fails ({type(err).__name__}: {err}).") from err
    if not any(e.shape == got.shape and torch.allclose(got, e, **_TOLERANCE) for e in expected):
        raise _not_exact(k, len(blocks), last, "its output is not that block's output, pooled.")
    cut.train(was_training)
    width = int(got.shape[1])
    if hasattr(model, "group_matcher") and isinstance(getattr(model, "num_features", None), int):
        # timm models describe their own output width (reset_classifier and others read it)
        model.num_features = width
        if hasattr(model, "head_hidden_size"):
            model.head_hidden_size = width
    return cut, width


def _pooled_candidates(model: nn.Module, out: torch.Tensor) -> list[torch.Tensor]:
    """What a cut network may return for the last kept block's output ``out``: its own head's pooling (timm),
    global average pooling (channels first or last), the first token or the mean token, or ``out`` itself."""
    candidates = []
    if hasattr(model, "forward_head"):
        candidates.append(model.forward_head(out, pre_logits=True))
    if out.ndim == 4:
        candidates += [out.mean(dim=(2, 3)), out.mean(dim=(1, 2))]
    elif out.ndim == 3:
        candidates += [out[:, 0], out.mean(dim=1)]
    candidates.append(out)
    return [torch.flatten(c, 1) for c in candidates]


# ------------------------------------------------------------------------------------------ transformers
def _layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer's layers: its largest ``ModuleList``, as :func:`~sktransfer._freezing.transformer_blocks`."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()), default=("", nn.ModuleList()))


def _cut_transformer(encoder: TextEncoder, blocks: list[list[str]], k: int) -> TextEncoder:
    model = encoder.model
    name, layers = _layer_list(model)
    n = len(blocks)
    n_before = n - len(layers)  # 1: the embeddings are block 0
    if not len(layers) or n_before not in (0, 1):
        raise ValueError(
            f"keep_blocks cannot cut this {type(model).__name__}: its blocks are not embeddings then one per "
            "transformer layer. Use keep_blocks=None."
        )
    n_layers = k - n_before
    if n_layers < 1:
        raise ValueError(
            f"keep_blocks={k} would keep only the embeddings (block 0) and no transformer layer: use keep_blocks "
            f"between 2 and {n} (n_backbone_blocks={n}: the embeddings, then {len(layers)} layers), or None."
        )
    config = getattr(model, "config", None)
    declared = getattr(config, "num_hidden_layers", None)
    if declared is not None and declared != len(layers):
        raise ValueError(
            f"keep_blocks cannot cut this {type(model).__name__}: its config declares {declared} layers but it holds "
            f"{len(layers)} layer modules (layers shared or repeated). Use keep_blocks=None."
        )
    removed = _modules_to_remove(encoder, blocks, k)
    probe = {key: value.to(_device(encoder)) for key, value in _text_probe(config).items()}
    was_training = encoder.training
    encoder.eval()
    with torch.inference_mode():
        expected = model(**probe, output_hidden_states=True).hidden_states[n_layers]
    _remove(encoder, removed)
    if declared is not None:
        config.num_hidden_layers = n_layers
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = config.layer_types[:n_layers]
    try:
        with torch.inference_mode():
            got = model(**probe).last_hidden_state
    except Exception as err:
        raise _not_exact(k, n, f"model.{name}.{n_layers - 1}", f"the cut model fails ({err}).") from err
    if len(layers) != n_layers or got.shape != expected.shape or not torch.allclose(got, expected, **_TOLERANCE):
        raise _not_exact(k, n, f"model.{name}.{n_layers - 1}", f"its token states are not hidden_states[{n_layers}].")
    encoder.train(was_training)
    return encoder


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _text_probe(config) -> dict[str, torch.Tensor]:
    vocab = int(getattr(config, "vocab_size", None) or 100)
    input_ids = (torch.arange(3, 19).reshape(2, 8) % vocab).long()
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}

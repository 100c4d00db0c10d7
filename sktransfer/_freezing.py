"""Split a backbone into ordered blocks and freeze them by ``freeze_layers``.

Blocks run from the input to the output: stem or embeddings first, then the
stages (timm, torchvision) or transformer layers. ``freeze_layers`` means the
same thing for every family:

- ``"all"``: the whole backbone is frozen (feature extraction);
- ``"none"`` or ``0``: nothing is frozen (full fine-tuning);
- ``k > 0``: the first ``k`` blocks are frozen; ``-k``: all but the last ``k``;
- a list of glob patterns: parameters whose names match are frozen.
"""

from __future__ import annotations

import fnmatch
from numbers import Integral

from torch import nn

FREEZE_FORMS = (
    "freeze_layers must be 'auto', 'all', 'none', an int k (freeze the first k blocks; -k freezes all but the "
    "last k) or a list of glob patterns over parameter names (e.g. ['model.blocks.0.*'])"
)


def timm_blocks(model: nn.Module, prefix: str = "") -> list[list[str]]:
    """Blocks of a timm model from its coarse ``group_matcher``, stem first."""
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    return [[prefix + name for name in names] for _, names in sorted(groups.items())]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


_ENOUGH_BLOCKS = 4


def _expand(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    children = [(prefix + name, child) for name, child in module.named_children() if _n_params(child)]
    if len(children) >= _ENOUGH_BLOCKS:
        # Already a stage split (e.g. a ResNet's stem and layer1..4): do not cut a stage into its layers.
        return children
    total = _n_params(module)
    out = []
    for name, child in children:
        is_container = isinstance(child, (nn.Sequential, nn.ModuleList)) or len(list(child.children())) > 2
        if is_container and _n_params(child) > total / 2 and len(list(child.children())) > 1:
            out.extend(_expand(child, name + "."))
        else:
            out.append((name, child))
    return out


def module_blocks(model: nn.Module, prefix: str = "") -> list[list[str]]:
    """Blocks of any ``nn.Module``: its children (a dominant container expanded while they are fewer than 4),
    leading parameter-holding leaf layers merged into one stem block."""
    blocks: list[list[str]] = []
    stem: list[str] = []
    for name, child in _expand(model, prefix):
        names = [f"{name}.{p}" for p, _ in child.named_parameters()]
        if not blocks and not list(child.children()):
            stem.extend(names)
            continue
        if stem:
            blocks.append(stem)
            stem = []
        blocks.append(names)
    return blocks or [stem]


def transformer_blocks(model: nn.Module, prefix: str = "") -> list[list[str]]:
    """Blocks of a transformers model: embeddings, then one block per layer (final norm/pooler join the last)."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return [[prefix + n for n, _ in model.named_parameters()]]
    layers_name, layers = max(lists, key=lambda item: _n_params(item[1]))
    layer_blocks: list[list[str]] = [[] for _ in layers]
    before, after = [], []
    for name, _ in model.named_parameters():
        if name.startswith(layers_name + "."):
            index = int(name[len(layers_name) + 1 :].split(".")[0])
            layer_blocks[index].append(prefix + name)
        elif not any(layer_blocks):
            before.append(prefix + name)
        else:
            after.append(prefix + name)
    blocks = ([before] if before else []) + layer_blocks
    blocks[-1].extend(after)
    return blocks


def validate_freeze_layers(freeze_layers, n_blocks: int | None) -> None:
    """Raise a ValueError or TypeError that lists the valid forms (the range is checked when ``n_blocks`` is known)."""
    if isinstance(freeze_layers, str):
        if freeze_layers not in ("auto", "all", "none"):
            raise ValueError(f"{FREEZE_FORMS}; got {freeze_layers!r}.")
    elif isinstance(freeze_layers, Integral) and not isinstance(freeze_layers, bool):
        if n_blocks is not None and abs(int(freeze_layers)) > n_blocks:
            raise ValueError(
                f"{FREEZE_FORMS}; got freeze_layers={freeze_layers} but this backbone has only {n_blocks} blocks, "
                f"so use a value between {-n_blocks} and {n_blocks}, or 'all'."
            )
    elif isinstance(freeze_layers, (list, tuple)):
        if not all(isinstance(p, str) for p in freeze_layers):
            raise TypeError(f"{FREEZE_FORMS}; the list must hold strings, got {freeze_layers!r}.")
    else:
        raise TypeError(f"{FREEZE_FORMS}; got {type(freeze_layers).__name__} {freeze_layers!r}.")


def n_frozen_blocks(freeze_layers, n_blocks: int) -> int | None:
    """How many leading blocks ``freeze_layers`` freezes, or None for a list of patterns."""
    if isinstance(freeze_layers, (list, tuple)):
        return None
    if freeze_layers == "all":
        return n_blocks
    if freeze_layers == "none":
        return 0
    k = int(freeze_layers)
    return k if k >= 0 else n_blocks + k


def frozen_names(blocks: list[list[str]], freeze_layers, all_names: list[str]) -> set[str]:
    """Names of the backbone parameters that ``freeze_layers`` freezes.

    Every glob pattern must match at least one parameter: a mistyped one would otherwise freeze nothing
    and silently fine-tune what it was meant to freeze.
    """
    if isinstance(freeze_layers, (list, tuple)):
        unmatched = [pat for pat in freeze_layers if not any(fnmatch.fnmatchcase(n, pat) for n in all_names)]
        if unmatched:
            examples = ", ".join(repr(n) for n in all_names[:: max(1, len(all_names) // 4)][:4])
            raise ValueError(
                f"freeze_layers patterns {unmatched} match no parameter of this backbone, so they would freeze "
                f"nothing. Patterns are matched (fnmatch, case-sensitive) against the backbone's parameter names, "
                f"e.g. {examples}; estimator.blocks_ lists them all, block by block, after a fit."
            )
        return {n for n in all_names if any(fnmatch.fnmatchcase(n, pat) for pat in freeze_layers)}
    k = n_frozen_blocks(freeze_layers, len(blocks))
    if k == len(blocks):
        return set(all_names)
    return {name for block in blocks[:k] for name in block}


def apply_freeze(encoder: nn.Module, names: set[str]) -> int:
    """Set ``requires_grad`` from ``names``; return the number of trainable backbone parameters."""
    trainable = 0
    for name, param in encoder.named_parameters():
        param.requires_grad_(name not in names)
        trainable += 0 if name in names else param.numel()
    return trainable


def set_norms_eval(encoder: nn.Module, every_batchnorm: bool = False) -> None:
    """Keep frozen BatchNorm layers (or all of them, with ``every_batchnorm``), and a fully frozen
    backbone, in eval mode during training."""
    if not any(p.requires_grad for p in encoder.parameters()):
        encoder.eval()
        return
    for module in encoder.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if every_batchnorm or not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.eval()

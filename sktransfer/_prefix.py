"""The frozen-prefix split: with ``freeze_layers=k``, run the frozen lower blocks once, not every epoch.

The first ``k`` blocks never change during a fit, so their output for a training image is the same in
every epoch. When a backbone runs its children in the order they are registered (timm and torchvision
convolutional networks do, down to the stage container that holds the split), the encoder splits at
the last frozen module into a prefix, whose outputs go to the feature cache, and a suffix: a view of
the encoder that shares the trainable modules and replaces the prefix by identities. The split is
checked numerically on a sample before use; backbones where it does not hold (a class token added
after the patch embedding, attention masks passed between layers) simply train uncached.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from ._modes import evaluating


class _Reached(Exception):
    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output


def _has_trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def _sequence(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Children in registration order; a child holding both frozen and trainable parameters is expanded."""
    out = []
    for name, child in module.named_children():
        params = list(child.parameters())
        mixed = any(p.requires_grad for p in params) and not all(p.requires_grad for p in params)
        if mixed and len(child._modules):
            out.extend(_sequence(child, f"{prefix}{name}."))
        else:
            out.append((prefix + name, child))
    return out


def _without(module: nn.Module, names: set[str], prefix: str = "") -> nn.Module:
    """A shallow view of ``module`` whose submodules named in ``names`` are identities (parameters shared)."""
    view = copy.copy(module)
    view._modules = OrderedDict(module._modules)
    for name, child in module._modules.items():
        full = prefix + name
        if full in names:
            view._modules[name] = nn.Identity()
        elif any(n.startswith(full + ".") for n in names):
            view._modules[name] = _without(child, names, full + ".")
    return view


class PrefixSplit:
    """An encoder split into a frozen prefix (run once, cached) and a trainable suffix.

    Attributes
    ----------
    boundary : str
        Name of the last prefix module, whose output the suffix takes as input.
    suffix : nn.Module
        The encoder with the prefix replaced by identities; it shares every other module.
    item_nbytes : int
        Bytes one input's prefix output takes as float32 (set when the split is checked).
    """

    def __init__(self, encoder: nn.Module, boundary: str, prefix_names: set[str]):
        self.boundary = boundary
        self._boundary_module = encoder.get_submodule(boundary)
        self.suffix = _without(encoder, prefix_names)
        self._encoder = encoder
        self.item_nbytes = 0

    def prefix(self, **inputs) -> torch.Tensor:
        """The boundary module's output: the encoder's forward, stopped there."""
        def stop(module, args, output):
            raise _Reached(output)

        handle = self._boundary_module.register_forward_hook(stop)
        try:
            self._encoder(**inputs)
        except _Reached as reached:
            return reached.output
        finally:
            handle.remove()
        raise RuntimeError(f"the encoder's forward never ran {self.boundary!r}")


def split_frozen_prefix(encoder: nn.Module, sample: dict[str, torch.Tensor]) -> PrefixSplit | None:
    """Split ``encoder`` after its frozen prefix, or None when there is no prefix or the split is not exact.

    ``sample`` is a small batch of encoder inputs used to check that prefix then suffix gives the
    encoder's own output.
    """
    sequence = _sequence(encoder)
    first_trainable = next((i for i, (_, m) in enumerate(sequence) if _has_trainable(m)), None)
    if not first_trainable or not any(True for _, m in sequence[:first_trainable] for _ in m.parameters()):
        return None
    head = sequence[:first_trainable]
    split = PrefixSplit(encoder, head[-1][0], {name for name, _ in head})
    try:
        with evaluating(split.suffix, encoder), torch.no_grad():
            expected = encoder(**sample)
            middle = split.prefix(**sample)
            got = split.suffix(middle)
        split.item_nbytes = middle[0].numel() * 4
        exact = got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    except Exception:  # any backbone whose forward is not the plain sequence of its children
        exact = False
    return split if exact else None

"""Parameter-efficient fine-tuning: LoRA adapters injected into the backbone with ``peft``.

With ``adapter=LoRA(...)`` (or ``"lora"``) the backbone's own weights are never trained: low-rank adapters are added
to some of its layers and only they (and the head) learn. ``freeze_layers`` says where adapters may
go: ``"all"`` (the default) and ``"none"`` put them in every block; ``k``, ``-k`` or glob patterns
keep them out of the blocks (parameters) that those values freeze.

Default target layers, for every backbone family: the attention projections when the backbone has
some (``query``/``key``/``value`` in BERT-like models, ``qkv`` in timm's ViTs, ``q_proj`` ...);
otherwise every linear layer and pointwise (1x1) convolution (CNNs such as EfficientNet).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

from sklearn.base import BaseEstimator
from torch import nn

from ._freezing import frozen_names
from ._persistence import register_parameter_object
from ._plan import Trainable
from ._validation import fraction, positive_int, positive_real, resolve_parameter_object

ATTENTION_PROJECTIONS = frozenset({
    "query", "key", "value", "q", "k", "v", "q_proj", "k_proj", "v_proj", "qkv", "c_attn", "Wqkv",
    "q_lin", "k_lin", "v_lin", "query_key_value", "in_proj",
})
_LORA_PARTS = re.compile(r"\.(base_layer|lora_[A-Za-z_]+\.[^.]+)(?=\.)")
_INSTALL = "adapter='lora' needs the peft package: pip install sktransfer[lora]"


def _import_peft():
    try:
        import peft
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return peft


def _adaptable(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return module.kernel_size == (1, 1) and module.groups == 1
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _matches(name: str, targets: Any) -> bool:
    """peft's rule: a str is a regular expression over the full name, a list holds names or name suffixes."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def default_targets(encoder: nn.Module) -> list[str]:
    """Names of the layers LoRA adapts by default: attention projections, else linear and 1x1 conv layers."""
    layers = [name for name, m in encoder.named_modules() if _adaptable(m)]
    attention = [name for name in layers if name.rpartition(".")[2] in ATTENTION_PROJECTIONS]
    return attention or layers


def choose_targets(encoder: nn.Module, blocks: list[list[str]], freeze_layers: Any, target_modules: Any) -> list[str]:
    """The layers to adapt: defaults or ``target_modules``, outside what ``freeze_layers`` freezes."""
    if target_modules is None:
        candidates = default_targets(encoder)
    else:
        candidates = [
            name for name, m in encoder.named_modules() if name and _matches(name, target_modules) and _adaptable(m)
        ]
    if freeze_layers not in ("all", "none"):
        names = [name for name, _ in encoder.named_parameters()]
        frozen = frozen_names(blocks, freeze_layers, names)
        candidates = [name for name in candidates if f"{name}.weight" not in frozen]
    if not candidates:
        raise ValueError(
            f"adapter='lora' found no layer to adapt (LoRA(target_modules={target_modules!r}), "
            f"freeze_layers={freeze_layers!r}): name linear or 1x1 convolution layers in LoRA's target_modules "
            "(e.g. adapter=LoRA(target_modules=['query', 'value'])), or let freeze_layers leave some blocks unfrozen."
        )
    return candidates


def inject_lora(encoder: nn.Module, targets: list[str], r: int, alpha: float, dropout: float) -> None:
    """Add LoRA adapters to the ``targets`` layers of ``encoder``, in place."""
    peft = _import_peft()
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    with warnings.catch_warnings():
        # Raised spuriously for a fresh encoder once peft has been used in the process.
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        peft.inject_adapter_in_model(config, encoder)


def is_lora_param(name: str) -> bool:
    """Whether a parameter name belongs to a LoRA adapter."""
    return ".lora_" in name


def adapter_blocks(encoder: nn.Module, blocks: list[list[str]]) -> list[list[str]]:
    """``blocks`` renamed for the adapted encoder: each adapter parameter joins its layer's block."""
    block_of = {name: i for i, block in enumerate(blocks) for name in block}
    out: list[list[str]] = [[] for _ in blocks]
    for name, _ in encoder.named_parameters():
        original = _LORA_PARTS.sub("", name)
        index = block_of.get(original, block_of.get(f"{original.rpartition('.')[0]}.weight", len(blocks) - 1))
        out[index].append(name)
    return out


def train_only_adapters(encoder: nn.Module) -> int:
    """Freeze every backbone weight but the adapters'; return the number of trainable parameters."""
    trainable = 0
    for name, param in encoder.named_parameters():
        param.requires_grad_(is_lora_param(name))
        trainable += param.numel() if param.requires_grad else 0
    return trainable


class LoRA(BaseEstimator):
    """LoRA adapters: parameter-efficient fine-tuning, the value of a trained estimator's ``adapter``.

    Low-rank adapters are added to some of the backbone's layers; only they (and the head) train, the
    backbone's own weights stay frozen. Needs ``pip install sktransfer[lora]`` (peft). ``adapter="lora"``
    is ``LoRA()``. Its parameters are the estimator's nested parameters (``adapter__r``), so a grid
    search can tune them.

    Parameters
    ----------
    r : int, default=8
        Rank of the adapters.
    alpha : float, default=16
        LoRA's scaling numerator (the adapters' output is scaled by ``alpha / r``).
    dropout : float, default=0.0
        Dropout on the adapters' input.
    target_modules : list of str, str or None, default=None
        Layers to adapt: names or name suffixes, or one regular expression over the full names (peft's
        rule). None: the attention projections where the backbone has some (``query``/``key``/``value``,
        ``qkv``, ``q_proj`` ...), else every linear layer and 1x1 convolution. ``freeze_layers`` keeps
        adapters out of the blocks it freezes.

    See Also
    --------
    PretrainedTextClassifier : Its ``adapter`` parameter takes a ``LoRA``.

    Examples
    --------
    >>> from sktransfer import LoRA, PretrainedTextClassifier
    >>> clf = PretrainedTextClassifier(adapter=LoRA(r=4, target_modules=["query", "value"]))
    >>> clf.get_params()["adapter__r"]
    4
    """

    _parameter_constraints = {
        "r": [positive_int],
        "alpha": [positive_real],
        "dropout": [fraction],
        "target_modules": [list, tuple, str, None],
    }

    def __init__(self, *, r: int = 8, alpha: float = 16, dropout: float = 0.0, target_modules: Any = None):
        self.r = r
        self.alpha = alpha
        self.dropout = dropout
        self.target_modules = target_modules


register_parameter_object(LoRA)


def resolve_adapter(adapter: LoRA | str | None) -> LoRA | None:
    """The adapter a fit uses: ``"lora"`` is ``LoRA()``; its parameters are checked."""
    return resolve_parameter_object(adapter, lambda name: LoRA())


@dataclass(frozen=True)
class AdapterOptions:
    """Where and how a fit adds its LoRA adapters."""

    freeze_layers: Any
    r: int
    alpha: float
    dropout: float
    target_modules: Any

    @classmethod
    def of(cls, adapter: LoRA | str, freeze_layers: Any) -> AdapterOptions:
        lora = resolve_adapter(adapter)
        return cls(freeze_layers, lora.r, lora.alpha, lora.dropout, lora.target_modules)


def attach_adapter(encoder: nn.Module, blocks: list[list[str]], options: AdapterOptions) -> Trainable:
    """Add LoRA adapters to ``encoder`` (unless a warm start already did) and train only them.

    Returns what trains: the blocks renamed for the adapted encoder, the number of trainable
    parameters, and the adapted layers (None when the adapters were already there).
    """
    targets = None
    if not any(is_lora_param(name) for name, _ in encoder.named_parameters()):
        targets = choose_targets(encoder, blocks, options.freeze_layers, options.target_modules)
        inject_lora(encoder, targets, options.r, options.alpha, options.dropout)
        blocks = adapter_blocks(encoder, blocks)
    return Trainable(blocks, train_only_adapters(encoder), targets)


def restore_adapter(encoder: nn.Module, targets: list[str] | None, options: AdapterOptions) -> None:
    """Re-add a fitted estimator's adapters to a freshly rebuilt ``encoder`` (before loading weights)."""
    if targets:
        inject_lora(encoder, targets, options.r, options.alpha, options.dropout)

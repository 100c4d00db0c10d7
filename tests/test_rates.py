"""lr="auto": a head's rate for the head, a fine-tuning rate for the backbone, by architecture."""

from __future__ import annotations

import numpy as np
import pytest

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier
from sktransfer._optim import AUTO_SCHEDULE, AUTO_WARMUP, BACKBONE_LR, HEAD_LR


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
    assert clf.lr_ == {"head": HEAD_LR, "backbone": BACKBONE_LR[family], "warmup": AUTO_WARMUP,
                       "schedule": AUTO_SCHEDULE}
    head, backbone = _group_rates(clf)
    assert head == {HEAD_LR} and backbone == {BACKBONE_LR[family]}
    assert clf.history_[0, "lr"] < HEAD_LR  # warming up


def test_auto_warms_up_then_decays_linearly_when_the_backbone_trains(image_data, tiny_image_params):
    X, y = image_data  # 16 samples, batch 8: 2 steps per epoch, 20 steps in 10 epochs, 2 of them warm-up
    params = {**tiny_image_params, "freeze_layers": "none", "batch_size": 8, "max_epochs": 10}
    clf = PretrainedImageClassifier(**params).fit(X, y)
    expected = [HEAD_LR * (0.5 if step == 0 else 1.0 - (step - 2) / 18) for step in range(0, 20, 2)]
    np.testing.assert_allclose(clf.history_[:, "lr"], expected)  # the head's rate, at each epoch's start
    constant = PretrainedImageClassifier(**params, lr_schedule="constant").fit(X, y)
    assert constant.lr_["schedule"] == "constant" and constant.history_[-1, "lr"] == HEAD_LR


def test_partial_fit_keeps_the_auto_rate_undecayed(image_data, tiny_image_params):
    X, y = image_data  # one epoch of a longer stream: decaying it to zero would stop the last batches learning
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", batch_size=8, warmup=0.0)
    clf.partial_fit(X, y).partial_fit(X, y)
    assert clf.lr_["schedule"] == "constant" and "lr_schedule" not in dict(clf.net_.callbacks_)


def test_auto_with_a_frozen_backbone_trains_only_the_head_without_warm_up(image_data, tiny_image_params):
    clf = PretrainedImageClassifier(**tiny_image_params, head_hidden=(8,)).fit(*image_data)
    assert clf.lr_ == {"head": HEAD_LR, "backbone": None, "warmup": 0.0, "schedule": "constant"}
    assert clf.history_[:, "lr"] == [HEAD_LR] * clf.n_epochs_


def test_an_explicit_rate_keeps_its_plain_meaning(image_data, tiny_image_params):
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", lr=0.02).fit(*image_data)
    assert clf.lr_ == {"head": 0.02, "backbone": 0.02, "warmup": 0.0, "schedule": "constant"}
    assert _group_rates(clf) == ({0.02}, {0.02})
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", lr=0.02, head_lr=0.1,
                                    warmup=0.5).fit(*image_data)
    assert clf.lr_ == {"head": 0.1, "backbone": 0.02, "warmup": 0.5, "schedule": "constant"}


def test_auto_head_lr_and_warmup_can_be_set_alone(image_data, tiny_image_params):
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers=-1, head_lr=5e-3, warmup=0.0).fit(*image_data)
    assert clf.lr_ == {"head": 5e-3, "backbone": BACKBONE_LR["convolutional"], "warmup": 0.0,
                       "schedule": AUTO_SCHEDULE}


def test_auto_gives_lora_adapters_an_adapter_rate(text_data, tiny_text_params):
    pytest.importorskip("peft")
    clf = PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 1}, adapter="lora", lora_r=2).fit(*text_data)
    assert clf.lr_["backbone"] == BACKBONE_LR["adapter"]

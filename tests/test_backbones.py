"""Backbone resolution: packaged weights offline, timm, torchvision, own modules, typos and missing weights."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, _backbones
from sktransfer._backbones import resolve_image_backbone, resolve_text_backbone


def _first_weight(encoder: nn.Module) -> torch.Tensor:
    return next(p for p in encoder.parameters() if p.ndim > 1).detach()


def test_packaged_image_backbone_loads_pretrained_weights_offline():
    pretrained = resolve_image_backbone("efficientnet_lite0", pretrained=True)
    random = resolve_image_backbone("efficientnet_lite0", pretrained=False)
    assert pretrained.num_features == 1280
    assert len(pretrained.blocks) > 2
    assert not torch.allclose(_first_weight(pretrained.encoder), _first_weight(random.encoder))
    # Trained BatchNorm statistics are not the fresh-init zeros.
    running_means = [m.running_mean for m in pretrained.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert running_means and all(m.abs().sum() > 0 for m in running_means)
    features = pretrained.encoder.eval()(torch.zeros(1, *pretrained.data_config["input_size"]))
    assert features.shape == (1, 1280)


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_packaged_text_backbone_loads_pretrained_weights_offline(name):
    pretrained = resolve_text_backbone(name, pretrained=True)
    random = resolve_text_backbone(name, pretrained=False)
    assert pretrained.num_features == 384
    assert pretrained.tokenizer is not None and len(pretrained.blocks) == 7  # embeddings + 6 layers
    assert not torch.allclose(_first_weight(pretrained.encoder), _first_weight(random.encoder))
    reference = resolve_text_backbone("all-MiniLM-L6-v2")
    assert torch.equal(_first_weight(pretrained.encoder), _first_weight(reference.encoder))


def test_timm_name_without_pretrained_weights(image_data):
    X, y = image_data
    clf = PretrainedImageClassifier(backbone="resnet18", pretrained=False, max_epochs=1, random_state=0)
    clf.fit(X[:4], y[[0, 1, -2, -1]])
    assert clf.n_features_out_ == 512
    assert clf.n_backbone_blocks_ >= 5
    assert clf.backbone_identity_.startswith("timm:resnet18")


def test_torchvision_name_gets_blocks_and_features(image_data):
    backbone = resolve_image_backbone("mobilenet_v3_small", pretrained=False)
    assert backbone.identity.startswith("torchvision:")  # resolved by torchvision, not timm
    assert backbone.num_features == 1024
    assert len(backbone.blocks) > 5
    names = {name for name, _ in backbone.encoder.named_parameters()}
    assert {n for block in backbone.blocks for n in block} == names


def test_torchvision_resnet18_module_gets_blocks_and_512_features():
    import torchvision

    model = torchvision.models.resnet18()
    model.fc = nn.Identity()
    backbone = resolve_image_backbone(model)
    assert backbone.num_features == 512
    # stem (conv1, bn1), then layer1 ... layer4
    assert len(backbone.blocks) == 5
    assert backbone.blocks[0] == ["model.conv1.weight", "model.bn1.weight", "model.bn1.bias"]


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x):
        return self.features(x)


def test_user_module_trains_end_to_end(image_data):
    X, y = image_data
    net = SmallConvNet()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    clf = PretrainedImageClassifier(backbone=net, freeze_layers="none", lr=1e-2, max_epochs=5, random_state=0)
    clf.fit(X, y)
    assert clf.n_features_out_ == 16
    assert clf.n_trainable_backbone_params_ == sum(p.numel() for p in net.parameters())
    tuned = clf.net_.module_.encoder.model.state_dict()
    assert any(not torch.equal(initial[k], tuned[k]) for k in initial)
    # The user's module itself is not trained in place, so a refit starts from the same weights.
    assert all(torch.equal(initial[k], v) for k, v in net.state_dict().items())
    assert clf.score(X, y) >= 0.9


@pytest.mark.parametrize(("cls", "name", "suggestion"), [
    (PretrainedImageClassifier, "efficientnet_lit0", "efficientnet_lite0"),
    (PretrainedImageClassifier, "resnt18", "resnet18"),
    (PretrainedTextClassifier, "all-MiniLM-L6-v3", "all-MiniLM-L6-v2"),
])
def test_typo_suggests_close_name_at_fit(cls, name, suggestion, monkeypatch, tmp_path):
    _offline_with_empty_cache(monkeypatch, tmp_path)
    clf = cls(backbone=name)  # construction never resolves the backbone
    X = np.zeros((2, 32, 32, 3), dtype=np.uint8) if cls is PretrainedImageClassifier else ["a", "b"]
    with pytest.raises(ValueError, match=f"Did you mean '{suggestion}'"):
        clf.fit(X, ["x", "y"])


def _offline_with_empty_cache(monkeypatch, tmp_path):
    """No Hub and an empty Hugging Face cache, whatever network or cache this machine has."""
    from huggingface_hub import constants

    monkeypatch.setattr(_backbones, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))


@pytest.mark.parametrize(("cls", "name", "X"), [
    (PretrainedImageClassifier, "resnet18", np.zeros((2, 32, 32, 3), dtype=np.uint8)),
    (PretrainedTextClassifier, "bert-base-uncased", ["a text", "another"]),
])
def test_missing_weights_fail_fast_in_fit_with_help(cls, name, X, monkeypatch, tmp_path):
    _offline_with_empty_cache(monkeypatch, tmp_path)
    clf = cls(backbone=name)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="No pretrained weights") as info:
        clf.fit(X, ["x", "y"])
    assert time.perf_counter() - start < 20, "resolving a missing backbone must not wait on the network"
    message = str(info.value)
    assert "save_pretrained" in message and "cache" in message and name in message


def test_unreachable_hub_is_detected_quickly(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "https://sktransfer-no-such-host.invalid")
    monkeypatch.setattr(_backbones.urllib.request, "getproxies", dict)
    start = time.perf_counter()
    assert not _backbones._hub_reachable(timeout=1.0)
    assert time.perf_counter() - start < 10


def test_local_huggingface_directory_for_text(tiny_bert_dir, text_data):
    X, y = text_data
    clf = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, max_epochs=1, random_state=0).fit(X, y)
    assert clf.n_features_out_ == 32
    assert clf.n_backbone_blocks_ == 3
    assert clf.backbone_identity_.startswith("local:")
    assert set(clf.predict(X).tolist()) <= {"pos", "neg"}


def test_loading_a_text_backbone_prints_no_progress_bar(tiny_bert_dir, capfd):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    _backbones.resolve_text_backbone(tiny_bert_dir)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the user's setting is restored

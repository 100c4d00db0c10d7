"""The frozen-prefix cache: partial fine-tuning runs the frozen lower blocks once, with the same results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import _counting
from conftest import force_raw_stage
from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, feature_cache
from sktransfer._backbones import ImageEncoder
from sktransfer._prefix import split_frozen_prefix


@pytest.fixture
def raw_image_items(monkeypatch) -> list[int]:
    """Number of raw images (3 channels) that entered an image encoder, i.e. ran through the stem."""
    items: list[int] = []
    original = ImageEncoder.forward

    def forward(self, pixel_values):
        if pixel_values.shape[1] == 3:
            items.append(pixel_values.shape[0])
        return original(self, pixel_values)

    monkeypatch.setattr(ImageEncoder, "forward", forward)
    _counting.uncount_fold_checks(monkeypatch, items)
    return items


@pytest.fixture(scope="module")
def tiny_timm_dir(tmp_path_factory) -> str:
    """timm's tiny test model saved as a local model directory: pretrained weights with a stable identity."""
    import timm
    from timm.models import save_for_hf

    path = tmp_path_factory.mktemp("tiny_timm")
    torch.manual_seed(0)
    save_for_hf(timm.create_model("test_efficientnet", pretrained=False), path)
    return str(path)


@pytest.fixture
def noisy_images():
    """Random images with random labels: predictions stay uncertain, so they differ if anything changes."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, size=(20, 32, 32, 3), dtype=np.uint8), rng.choice(["a", "b"], size=20)


@pytest.mark.parametrize("freeze_layers", [-2, 1, ["model.conv_stem.*", "model.bn1.*", "model.blocks.0.*"]])
def test_prefix_cached_fit_predicts_as_an_uncached_fit(tiny_image_params, noisy_images, freeze_layers, monkeypatch):
    X, y = noisy_images
    params = {**tiny_image_params, "max_epochs": 2, "freeze_layers": freeze_layers, "lr": 1e-4}
    cached = PretrainedImageClassifier(**params).fit(X, y)
    uncached = PretrainedImageClassifier(**params, cache=False).fit(X, y)
    force_raw_stage(monkeypatch)
    plain = PretrainedImageClassifier(**params).fit(X, y)
    assert cached.prefix_cached_ and uncached.prefix_cached_ and not plain.prefix_cached_
    np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-6)
    proba = plain.predict_proba(X)
    assert 0.05 < proba.max(axis=1).min() < 0.95
    np.testing.assert_allclose(cached.predict_proba(X), proba, atol=1e-4)


def test_frozen_prefix_runs_once_per_image_across_epochs_and_fits(tiny_timm_dir, noisy_images, raw_image_items):
    X, y = noisy_images
    X = X.copy()
    X[:, 0, 0, 0] = np.random.default_rng().integers(0, 255, size=len(X))  # never embedded by an earlier test
    params = {"backbone": tiny_timm_dir, "freeze_layers": -2, "random_state": 0}
    PretrainedImageClassifier(**params, max_epochs=5).fit(X, y)
    # the prefix once and the two-image check of the split (run whole, then prefix alone); the head's
    # standardisation runs the suffix on cached prefix outputs
    assert sum(raw_image_items) == len(X) + 4
    raw_image_items.clear()
    PretrainedImageClassifier(**params, max_epochs=2, lr=1e-2).fit(X, y)
    assert sum(raw_image_items) <= len(X) + 4
    raw_image_items.clear()
    PretrainedImageClassifier(**params, max_epochs=5, cache=False).fit(X, y)
    assert sum(raw_image_items) == len(X) + 4  # without the cache: once per fit, never kept for the next
    raw_image_items.clear()
    PretrainedImageClassifier(**params, max_epochs=2, cache=False).fit(X, y)
    assert sum(raw_image_items) == len(X) + 4


def test_changed_images_get_new_prefix_outputs(tiny_timm_dir, noisy_images, raw_image_items):
    X, y = noisy_images
    params = {"backbone": tiny_timm_dir, "freeze_layers": -2, "max_epochs": 1}
    PretrainedImageClassifier(**params).fit(X, y)
    X2 = X.copy()
    X2[:5] = 255 - X2[:5]
    raw_image_items.clear()
    PretrainedImageClassifier(**params).fit(X2, y)
    # The split check and the 5 changed images' prefix outputs; the head's standardisation runs the suffix
    # on cached prefix outputs, so it decodes nothing more.
    assert sum(raw_image_items) == 4 + 5


class _NotSequential(nn.Module):
    """The input is used again after the first layer, so prefix-then-suffix is not the forward."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.top = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.top(self.stem(x)).mean((2, 3)) + x.mean((1, 2, 3))[:, None]


def test_backbone_whose_forward_is_not_sequential_trains_uncached(noisy_images):
    X, y = noisy_images
    clf = PretrainedImageClassifier(backbone=_NotSequential(), freeze_layers=1, max_epochs=2, random_state=0)
    clf.fit(X, y)
    assert not clf.prefix_cached_
    assert split_frozen_prefix(ImageEncoder(_NotSequential()), {"pixel_values": torch.zeros(2, 3, 8, 8)}) is None


def test_prefix_outputs_over_the_cache_bound_are_not_cached(tiny_image_params, noisy_images, monkeypatch):
    monkeypatch.setattr(feature_cache, "max_bytes", 1000)
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers=-2).fit(*noisy_images)
    assert not clf.prefix_cached_


@pytest.mark.parametrize(
    "option", [{"augment": "light"}, {"unfreeze_every": 1}, {"freeze_layers": 0}]
)
def test_prefix_cache_is_off_where_the_prefix_changes(tiny_image_params, noisy_images, option):
    clf = PretrainedImageClassifier(**{**tiny_image_params, "freeze_layers": -2, **option}).fit(*noisy_images)
    assert not clf.prefix_cached_


def test_text_backbones_train_uncached(tiny_text_params, text_data):
    clf = PretrainedTextClassifier(**tiny_text_params, freeze_layers=1).fit(*text_data)
    assert not clf.prefix_cached_


def test_prefix_cache_with_early_stopping_and_sample_weight(tiny_image_params, noisy_images, monkeypatch):
    X, y = noisy_images
    weights = np.linspace(0.5, 2.0, len(X))
    params = {**tiny_image_params, "freeze_layers": -2, "lr": 1e-4, "early_stopping": True, "validation_fraction": 0.25}
    cached = PretrainedImageClassifier(**params).fit(X, y, sample_weight=weights)
    force_raw_stage(monkeypatch)
    plain = PretrainedImageClassifier(**params).fit(X, y, sample_weight=weights)
    assert cached.prefix_cached_ and "valid_loss" in cached.history_[-1]
    np.testing.assert_allclose(cached.history_[:, "valid_loss"], plain.history_[:, "valid_loss"], rtol=1e-4)
    np.testing.assert_allclose(cached.predict_proba(X), plain.predict_proba(X), atol=1e-4)

"""The CPU speed mechanisms keep results: preprocessing, memory format, parallel decoding, the weights cache and
int8 quantisation (equality within stated tolerances; speeds are benchmarked, never asserted here: see
benchmarks/inference.py)."""

from __future__ import annotations

import os
import threading
from unittest import mock

import numpy as np
import pytest
import timm
import timm.data
import torch
from PIL import Image
from sklearn.model_selection import GridSearchCV
from torchvision.transforms import v2

from sktransfer import PretrainedImageClassifier, PretrainedImageEmbedder, PretrainedTextEmbedder, _backbones, _image
from sktransfer._backbones import IMAGENET_CONFIG, resolve_image_backbone, resolve_text_backbone
from sktransfer._device import to_device, wants_channels_last
from sktransfer._image_data import EvalTransform, ImageDataset, NormalizeTable, build_transform
from sktransfer._quantize import INT8_DYNAMIC, is_quantized, quantize_int8
from sktransfer._weights_cache import BackboneCache

TINY_CONFIG = {"input_size": (3, 160, 160), "interpolation": "bicubic", "crop_pct": 0.95, "crop_mode": "center",
               "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}  # test_efficientnet's


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth image with edges (like a photo: resampling differences show, but stay small)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.NEAREST)
    noise = rng.integers(-20, 20, size=(height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=int) + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def tiny_timm_dir(tmp_path_factory) -> str:
    """timm's tiny test model saved as a local directory: pretrained weights that a name identifies."""
    from timm.models import save_for_hf

    path = tmp_path_factory.mktemp("tiny_timm_speed")
    torch.manual_seed(0)
    save_for_hf(timm.create_model("test_efficientnet", pretrained=False), path)
    return str(path)


@pytest.fixture
def fresh_cache(monkeypatch) -> BackboneCache:
    """An empty process-wide weights cache for this test."""
    cache = BackboneCache()
    monkeypatch.setattr(_backbones, "backbone_cache", cache)
    return cache


# ---------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("config", [TINY_CONFIG, IMAGENET_CONFIG], ids=["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [(333, 500), (500, 375), (168, 240), (1000, 1000), (161, 160)])
def test_eval_transform_equals_timm_within_one_level(config, size):
    reference = timm.data.create_transform(**config, is_training=False)
    fast = build_transform(config)
    assert isinstance(fast, EvalTransform)
    image = _photo(*size)
    expected, got = reference(image), fast(image)
    assert got.shape == expected.shape == (3, *config["input_size"][1:]) and got.dtype == torch.float32
    levels = (got - expected).abs() * torch.tensor(config["std"]).view(3, 1, 1) * 255
    assert levels.max() <= 1.0 + 1e-4  # at most 1/255 of the pixel range
    assert (levels > 1e-3).float().mean() < 0.01  # in under 1 % of the values


def test_normalisation_tables_are_bitwise_equal_to_torchvision():
    image = _photo(64, 48)
    mean, std = TINY_CONFIG["mean"], TINY_CONFIG["std"]
    v1 = timm.data.create_transform(**{**TINY_CONFIG, "input_size": (3, 48, 64)}, is_training=False).transforms[2:]
    assert torch.equal(NormalizeTable(mean, std)(image), v1[1](v1[0](image)))
    v2_tail = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    assert torch.equal(NormalizeTable(mean, std, scale="multiply")(image), v2_tail(image))


def test_unusual_inputs_and_pipelines_fall_back_to_torchvision():
    fast = build_transform(TINY_CONFIG)
    tensor = torch.rand(3, 200, 180)
    assert torch.equal(fast(tensor), fast.fallback(tensor))
    squash = {**TINY_CONFIG, "crop_mode": "squash"}
    assert not isinstance(build_transform(squash), EvalTransform)


def test_augmentations_end_in_the_table_and_stay_seeded():
    transform = build_transform(TINY_CONFIG, augment="light")
    assert isinstance(transform.transforms[-1], NormalizeTable)
    image = _photo(200, 180)
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(0)
    assert torch.equal(first, transform(image))


def test_parallel_decoding_gives_the_same_batch_and_the_same_errors(tmp_path):
    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f"{i}.jpg"))
        _photo(120 + 10 * i, 100, seed=i).save(paths[-1])
    dataset = ImageDataset(paths, build_transform(TINY_CONFIG), y=np.arange(6))
    with mock.patch.object(torch, "get_num_threads", return_value=2):
        batch = dataset.__getitems__(list(range(6)))
    for i, (x, target) in enumerate(batch):
        assert target == i and torch.equal(x["pixel_values"], dataset[i][0]["pixel_values"])
    (tmp_path / "2.jpg").write_bytes(b"not an image")
    with mock.patch.object(torch, "get_num_threads", return_value=2), pytest.raises(ValueError, match="image 2"):
        dataset.__getitems__(list(range(6)))


# ---------------------------------------------------------------- memory format
def test_convolutional_backbones_run_channels_last_on_cpu_transformers_do_not():
    cnn = resolve_image_backbone("test_efficientnet", pretrained=False).encoder
    linear = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 500))
    assert wants_channels_last(cnn, "cpu") and not wants_channels_last(linear, "cpu")
    to_device(cnn, "cpu")
    conv = next(m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_embeddings_and_predictions_equal_the_plain_pipeline(tmp_path, image_data, monkeypatch):
    X, y = image_data[0][::2], image_data[1][::2]
    paths = []
    for i, array in enumerate(X):
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray(np.kron(array, np.ones((5, 7, 1), dtype=np.uint8))).save(paths[-1])
    params = {"backbone": "test_efficientnet", "pretrained": False, "cache": False}
    embedder = PretrainedImageEmbedder(**params).fit(paths)
    clf = PretrainedImageClassifier(**params, max_epochs=1, freeze_layers="none", random_state=0).fit(paths, y)
    fast_embeddings, fast_proba = embedder.transform(paths), clf.predict_proba(paths)
    # Today's pipeline before these changes: timm's transform per image, the default memory format.
    plain = lambda config, augment=None: timm.data.create_transform(**config, is_training=False)  # noqa: E731
    monkeypatch.setattr(_image, "build_transform", plain)
    for module in (embedder.encoder_, clf.net_.module_):
        module.to(memory_format=torch.contiguous_format)
        assert all(p.is_contiguous() for p in module.parameters())
    reference = embedder.transform(paths)
    np.testing.assert_allclose(fast_embeddings, reference, rtol=1e-3, atol=2e-3 * np.abs(reference).max())
    np.testing.assert_allclose(fast_proba, clf.predict_proba(paths), atol=1e-3)


# ---------------------------------------------------------------- weights cache
def test_cache_loads_once_and_hands_out_pristine_copies():
    cache = BackboneCache()
    load = mock.Mock(side_effect=lambda: torch.nn.Linear(3, 2))
    first = cache.get("key", load)
    with torch.no_grad():
        first.weight.add_(100.0)  # a fit training its copy
    second = cache.get("key", load)
    assert load.call_count == 1 and cache.loads == 1
    assert second is not first and torch.all(second.weight.abs() < 50)
    assert cache.get(None, load) is not None and load.call_count == 2  # unnamed weights are never kept
    cache.clear()
    cache.get("key", load)
    assert load.call_count == 3


def test_cache_is_bounded_least_recently_used_first():
    cache = BackboneCache(max_bytes=2 * 3 * 4)  # room for two 3-float modules
    for key in ("a", "b", "a", "c"):
        cache.get(key, lambda: torch.nn.Linear(2, 1))
    assert "a" in cache and "c" in cache and "b" not in cache and cache.nbytes <= cache.max_bytes
    cache.get("too big", lambda: torch.nn.Linear(10, 10))
    assert "too big" not in cache


def test_concurrent_requests_load_once():
    cache, started = BackboneCache(), threading.Event()

    def slow_load():
        started.wait(5)
        return torch.nn.Linear(2, 2)
    threads = [threading.Thread(target=cache.get, args=("key", slow_load)) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.set()
    for thread in threads:
        thread.join()
    assert cache.loads == 1


def test_fits_start_from_pristine_weights_loaded_once(tiny_timm_dir, image_data, fresh_cache):
    X, y = image_data
    create = mock.Mock(wraps=timm.create_model)
    with mock.patch.object(timm, "create_model", create):
        tuned = PretrainedImageClassifier(backbone=tiny_timm_dir, freeze_layers="none", max_epochs=1, lr=0.1,
                                          cache=False, random_state=0).fit(X, y)
        again = resolve_image_backbone(tiny_timm_dir)
    assert create.call_count == 1 and fresh_cache.loads == 1
    on_disk = timm.create_model(f"local-dir:{tiny_timm_dir}", pretrained=True, num_classes=0).state_dict()
    trained = tuned.net_.module_.encoder.model.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in on_disk.items() if v.is_floating_point())
    for name, value in again.encoder.model.state_dict().items():
        assert torch.equal(value, on_disk[name]), name


def test_grid_search_loads_the_backbone_once(tiny_timm_dir, image_data, fresh_cache):
    X, y = image_data
    search = GridSearchCV(PretrainedImageClassifier(backbone=tiny_timm_dir, max_epochs=1, random_state=0),
                          {"C": [0.1, 1.0]}, cv=2)
    search.fit(X, y)
    assert fresh_cache.loads == 1 and len(fresh_cache) == 1


def test_a_changed_directory_or_random_weights_are_loaded_again(tiny_timm_dir, fresh_cache):
    resolve_image_backbone(tiny_timm_dir)
    config = os.path.join(tiny_timm_dir, "config.json")
    stat = os.stat(config)
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the directory's files changed
    resolve_image_backbone(tiny_timm_dir)
    resolve_image_backbone("test_efficientnet", pretrained=False)
    resolve_image_backbone("test_efficientnet", pretrained=False)
    assert fresh_cache.loads == 2 and len(fresh_cache) == 2


def test_text_backbone_and_tokenizer_are_kept_and_copied(tiny_bert_dir, fresh_cache):
    first = resolve_text_backbone(tiny_bert_dir, pooling="mean")
    with torch.no_grad():
        next(first.encoder.parameters()).add_(1.0)
    second = resolve_text_backbone(tiny_bert_dir, pooling="cls")
    assert fresh_cache.loads == 1 and second.encoder.pooling == "cls" and second.tokenizer is not first.tokenizer
    fresh_cache.clear()
    reference = resolve_text_backbone(tiny_bert_dir)
    for a, b in zip(second.encoder.parameters(), reference.encoder.parameters()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- int8
def test_int8_quantisation_is_explicit_and_keeps_embeddings_close(tiny_bert_dir, text_data):
    X, _ = text_data
    embedder = PretrainedTextEmbedder(backbone=tiny_bert_dir, max_length=16, device="cpu").fit(X)
    with mock.patch.object(embedder, "device_", "cuda:0"), pytest.raises(ValueError, match="on the CPU"):
        quantize_int8(embedder)
    reference = embedder.transform(X)  # cached under the float32 identity
    identity = embedder.backbone_identity_
    quantize_int8(quantize_int8(embedder))  # twice: the second call changes nothing
    assert is_quantized(embedder.encoder_) and embedder.backbone_identity_ == f"{identity}:{INT8_DYNAMIC}"
    assert not any(type(m) is torch.nn.Linear for m in embedder.encoder_.modules())
    quantized = embedder.transform(X)
    assert not np.array_equal(quantized, reference)  # computed anew, not served from the float32 cache
    cosine = (quantized * reference).sum(1) / np.linalg.norm(quantized, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.99

"""keep_blocks: only the first k blocks of a backbone are kept; the later ones are removed, not only frozen."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import sktransfer
from conftest import WORDS, force_raw_stage
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
)
from sktransfer._backbones import resolve_image_backbone, resolve_text_backbone
from sktransfer._freezing import timm_blocks, transformer_blocks
from sktransfer._truncate import PooledImageEncoder, Removed, keep_first_blocks

ESTIMATORS = [getattr(sktransfer, name) for name in sktransfer.__all__ if name.startswith("Pretrained")]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def bert4_dir(tmp_path_factory) -> str:
    """A 4-layer tiny BERT (5 blocks: embeddings, then 4 layers), saved with its tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("bert4")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture
def noisy_images():
    """Random images with random labels: predictions stay uncertain, so they differ if anything changes."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, size=(12, 32, 32, 3), dtype=np.uint8), rng.choice(["a", "b"], size=12)


def _probe(backbone) -> torch.Tensor:
    return torch.randn(2, *backbone.data_config["input_size"], generator=torch.Generator().manual_seed(1))


@torch.inference_mode()
def _encode(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return encoder.eval()(x)


# ------------------------------------------------------------------------------------------ the parameter
@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_estimator_takes_keep_blocks(cls):
    assert cls().get_params()["keep_blocks"] is None
    assert cls(keep_blocks=2).get_params()["keep_blocks"] == 2


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_keep_blocks_must_be_a_positive_int(value, image_data):
    with pytest.raises((ValueError, TypeError), match="keep_blocks"):
        PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False, keep_blocks=value).fit(image_data[0])


def test_more_blocks_than_the_backbone_has_names_the_range(image_data, bert4_dir, text_data):
    with pytest.raises(ValueError, match=r"keep_blocks=7, but this backbone has only n_backbone_blocks=6 blocks"):
        PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False, keep_blocks=7).fit(image_data[0])
    with pytest.raises(ValueError, match=r"only the embeddings .* between 2 and 5"):
        PretrainedTextEmbedder(backbone=bert4_dir, keep_blocks=1, max_length=16).fit(text_data[0])


def test_keeping_every_block_changes_nothing():
    backbone = resolve_image_backbone("test_efficientnet", pretrained=False)
    assert keep_first_blocks(backbone, None) is backbone
    assert keep_first_blocks(backbone, len(backbone.blocks)) is backbone


# ------------------------------------------------------------------------------------------------- timm
@pytest.mark.parametrize(("name", "k", "intermediates"), [
    *[("test_efficientnet", k, {"extra_blocks": True}) for k in range(1, 6)],
    *[("test_resnet", k, {}) for k in range(2, 5)],
], ids=lambda value: str(value) if not isinstance(value, dict) else "")
def test_timm_cut_returns_the_pooled_output_of_its_last_kept_block(name, k, intermediates):
    full = resolve_image_backbone(name, pretrained=False)
    x = _probe(full)
    with torch.inference_mode():
        (reference,) = full.encoder.model.eval().forward_intermediates(
            x, indices=[k - 1], intermediates_only=True, **intermediates)
    cut = keep_first_blocks(copy.deepcopy(full), k)

    assert len(cut.blocks) == k == len(timm_blocks(cut.encoder.model))  # a fitted cut model counts the same
    assert cut.blocks == full.blocks[:k]
    names = {n for n, _ in cut.encoder.named_parameters()}
    assert names == {n for block in full.blocks[:k] for n in block}  # the later blocks' parameters are gone
    assert _n_params(cut.encoder) < _n_params(full.encoder)
    assert cut.num_features == reference.shape[1] == cut.encoder.model.num_features
    assert cut.identity == f"{full.identity}:keep_blocks={k}"
    torch.testing.assert_close(_encode(cut.encoder, x), reference.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)


def test_a_cut_that_is_not_exact_is_refused():
    # timm's ResNet stem ends with an activation and a max pool that hold no parameters: block 0's modules
    # end before them, so "the pooled output of block 0" is not what a cut network would give.
    with pytest.raises(ValueError, match=r"keep_blocks=1 cannot cut this backbone exactly .*'model.bn1'"):
        keep_first_blocks(resolve_image_backbone("test_resnet", pretrained=False), 1)


# ---------------------------------------------------------------------------------- torchvision and own modules
class ThreeStageNet(nn.Module):
    """A user module: stem, then three stages; the last one pools and flattens."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.stage1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2), nn.ReLU())
        self.stage3 = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.stage3(self.stage2(self.stage1(self.stem(x))))


class SkipNet(ThreeStageNet):
    """Not a chain of its blocks: the stem's output joins the last stage's."""

    def forward(self, x):
        stem = self.stem(x)
        return self.stage3(self.stage2(self.stage1(stem))) + stem.mean()


def test_user_module_cut_adds_global_average_pooling(image_data):
    net = ThreeStageNet()
    full = resolve_image_backbone(net)
    assert len(full.blocks) == 4
    x = _probe(full)
    with torch.inference_mode():
        reference = net.eval().stage2(net.stage1(net.stem(x))).mean(dim=(2, 3))
    cut = keep_first_blocks(resolve_image_backbone(net), 3)
    assert isinstance(cut.encoder, PooledImageEncoder)  # stage3 held the pooling: it is added back
    assert cut.num_features == 32 and isinstance(cut.encoder.model.stage3, Removed)
    torch.testing.assert_close(_encode(cut.encoder, x), reference, rtol=1e-4, atol=1e-5)

    embedder = PretrainedImageEmbedder(backbone=net, keep_blocks=3).fit(image_data[0])
    assert embedder.n_backbone_blocks_ == 3
    assert embedder.transform(image_data[0][:3]).shape == (3, 32)

    with pytest.raises(ValueError, match="cannot cut this backbone exactly"):
        keep_first_blocks(resolve_image_backbone(SkipNet()), 3)


def test_torchvision_resnet_cut_is_the_pooled_output_of_layer2():
    import torchvision

    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    full = resolve_image_backbone(net)
    x = _probe(full)
    with torch.inference_mode():
        net.eval()
        reference = net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))).mean(dim=(2, 3))
    cut = keep_first_blocks(full, 3)
    assert len(cut.blocks) == 3 and cut.num_features == 128
    assert _n_params(cut.encoder) < _n_params(net) / 10
    torch.testing.assert_close(_encode(cut.encoder, x), reference, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ transformers
@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_transformer_cut_gives_the_full_models_hidden_states_of_layer_k_minus_1(bert4_dir, text_data, k, pooling):
    from transformers import AutoModel, AutoTokenizer

    X = text_data[0][:6]
    params = {"backbone": bert4_dir, "keep_blocks": k, "pooling": pooling, "max_length": 16, "cache": False}
    embedder = PretrainedTextEmbedder(**params).fit(X)
    model = embedder.encoder_.model
    assert embedder.n_backbone_blocks_ == k == len(transformer_blocks(model))
    assert model.config.num_hidden_layers == len(model.encoder.layer) == k - 1
    full = AutoModel.from_pretrained(bert4_dir).eval()
    assert _n_params(model) < _n_params(full)
    assert not any(name.startswith("pooler.") for name, _ in model.named_parameters())  # unused, removed

    tokens = AutoTokenizer.from_pretrained(bert4_dir)(X, padding=True, truncation=True, max_length=16,
                                                      return_tensors="pt")
    with torch.inference_mode():
        hidden = full(**tokens, output_hidden_states=True).hidden_states[k - 1]
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    expected = hidden[:, 0] if pooling == "cls" else (hidden * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(embedder.transform(X), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_cut_leaves_the_registry_copy_whole(bert4_dir):
    cut = keep_first_blocks(resolve_text_backbone(bert4_dir), 2)
    again = resolve_text_backbone(bert4_dir)
    assert len(cut.blocks) == 2 and len(again.blocks) == 5
    assert again.encoder.model.config.num_hidden_layers == 4


# ------------------------------------------------------------------------------------------ interactions
def test_freeze_layers_counts_the_kept_blocks(image_data):
    X, y = image_data
    params = {"backbone": "test_efficientnet", "pretrained": False, "max_epochs": 1, "random_state": 0,
              "keep_blocks": 3}
    X, y = X[4:12], y[4:12]  # both classes
    clf = PretrainedImageClassifier(**params, freeze_layers=-1).fit(X, y)
    assert clf.n_backbone_blocks_ == len(clf.blocks_) == 3
    assert clf.n_features_out_ == 24 and clf.transform(X[:2]).shape == (2, 24)
    encoder = clf.net_.module_.encoder
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == set(clf.blocks_[2])
    assert clf.n_trainable_backbone_params_ == sum(p.numel() for n, p in encoder.named_parameters() if n in trainable)
    with pytest.raises(ValueError, match="only 3 blocks"):
        PretrainedImageClassifier(**params, freeze_layers=4).fit(X, y)


def test_feature_cache_never_mixes_cut_and_whole_backbones(bert4_dir, text_data):
    X = text_data[0][:8]
    # The whole model's embeddings go to the cache first, under its name.
    whole = PretrainedTextEmbedder(backbone=bert4_dir, max_length=16).fit(X).transform(X)
    cut = PretrainedTextEmbedder(backbone=bert4_dir, keep_blocks=2, max_length=16).fit(X)
    assert cut.backbone_identity_.endswith(":keep_blocks=2")
    cached = cut.transform(X)
    fresh = PretrainedTextEmbedder(backbone=bert4_dir, keep_blocks=2, max_length=16, cache=False).fit(X).transform(X)
    np.testing.assert_allclose(cached, fresh, rtol=1e-5, atol=1e-6)
    assert not np.allclose(cached, whole, atol=1e-3)


def test_frozen_prefix_cache_works_on_a_cut_backbone(noisy_images, monkeypatch):
    X, y = noisy_images
    params = {"backbone": "test_efficientnet", "pretrained": False, "max_epochs": 2, "random_state": 0,
              "keep_blocks": 4, "freeze_layers": 2, "lr": 1e-4}
    cached = PretrainedImageClassifier(**params).fit(X, y)
    force_raw_stage(monkeypatch)  # the reference runs the whole cut backbone at every step
    plain = PretrainedImageClassifier(**params).fit(X, y)
    assert cached.prefix_cached_ and not plain.prefix_cached_
    assert cached.n_backbone_blocks_ == 4
    np.testing.assert_allclose(cached.predict_proba(X), plain.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_pickle_and_save_load_predict_the_same_with_smaller_files(modality, image_data, text_data, bert4_dir,
                                                                  tmp_path):
    if modality == "image":
        (X, y), cls = image_data, PretrainedImageClassifier
        params = {"backbone": "test_efficientnet", "pretrained": False, "keep_blocks": 3}
    else:
        (X, y), cls = text_data, PretrainedTextClassifier
        params = {"backbone": bert4_dir, "max_length": 16, "keep_blocks": 2}
    params.update(max_epochs=1, random_state=0, freeze_layers="none")
    clf = cls(**params).fit(X, y)
    proba = clf.predict_proba(X)
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.n_backbone_blocks_ == params["keep_blocks"]
    np.testing.assert_allclose(loaded.predict_proba(X), proba, atol=1e-6)
    reloaded = sktransfer.load(clf.save(tmp_path / "cut"))
    assert reloaded.keep_blocks == params["keep_blocks"]
    np.testing.assert_allclose(reloaded.predict_proba(X), proba, atol=1e-6)

    whole = cls(**{**params, "keep_blocks": None}).fit(X, y).save(tmp_path / "whole")
    assert (tmp_path / "cut" / "model.safetensors").stat().st_size < (whole / "model.safetensors").stat().st_size


def test_a_fitted_model_as_backbone_keeps_or_cuts_its_blocks(image_data):
    X, y = image_data
    common = {"pretrained": False, "max_epochs": 1, "random_state": 0, "freeze_layers": "none"}
    cut = PretrainedImageClassifier(backbone="test_efficientnet", keep_blocks=3, **common).fit(X, y)
    after_cut = PretrainedImageClassifier(backbone=cut, max_epochs=1, random_state=0).fit(X, y)
    assert after_cut.n_backbone_blocks_ == 3 and after_cut.n_features_out_ == cut.n_features_out_ == 24

    whole = PretrainedImageClassifier(backbone="test_efficientnet", **common).fit(X, y)
    cut_later = PretrainedImageClassifier(backbone=whole, keep_blocks=2, max_epochs=1, random_state=0).fit(X, y)
    assert cut_later.n_backbone_blocks_ == 2 and cut_later.n_features_out_ == 16
    np.testing.assert_allclose(pickle.loads(pickle.dumps(cut_later)).predict_proba(X), cut_later.predict_proba(X),
                               atol=1e-6)


def test_onnx_export_of_a_cut_text_model(bert4_dir, text_data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from transformers import AutoTokenizer

    X, y = text_data
    clf = PretrainedTextClassifier(backbone=bert4_dir, keep_blocks=3, max_length=16, max_epochs=1,
                                   random_state=0, freeze_layers="none").fit(X, y)
    path = clf.export_onnx(tmp_path / "text.onnx")
    tokens = AutoTokenizer.from_pretrained(tmp_path)(X, padding=True, truncation=True, max_length=16,
                                                     return_tensors="np")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]})
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-4)

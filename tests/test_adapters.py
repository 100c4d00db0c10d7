"""LoRA adapters (adapter="lora"): what trains, where adapters go, persistence, tuning, missing peft."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.utils import estimator_checks

from conftest import SKLEARN_API_CHECKS
from sktransfer import LoRA, PretrainedImageClassifier, PretrainedTextClassifier
from sktransfer._persistence import load

CHECKS = SKLEARN_API_CHECKS
QKV = [f"model.encoder.layer.{i}.attention.self.{p}" for i in (0, 1) for p in ("query", "key", "value")]


@pytest.fixture
def lora_params(tiny_bert_dir) -> dict:
    # Rank 1: the tiny BERT's layers are 32 wide, so rank 8 would be a quarter of their size.
    return {"backbone": tiny_bert_dir, "max_length": 16, "random_state": 0, "adapter": LoRA(r=1),
            "lr": 1e-2, "max_epochs": 3}


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, text_data):
    """A LoRA classifier fitted on the toy sentiment texts, and the backbone state it started from."""
    X, y = text_data
    clf = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, random_state=0, adapter=LoRA(r=1),
                                   lr=1e-2, max_epochs=3)
    before = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16)._resolve_backbone().encoder.state_dict()
    return clf.fit(X, y), before


@pytest.mark.parametrize("check", CHECKS)
def test_sklearn_estimator_checks_with_lora_config(check):
    estimator = PretrainedTextClassifier(adapter=LoRA(r=4, alpha=8, dropout=0.1, target_modules=["query", "value"]))
    getattr(estimator_checks, check)("PretrainedTextClassifier", estimator)


def test_lora_trains_a_small_fraction(fitted):
    clf, _ = fitted
    encoder = clf.net_.module_.encoder
    total = sum(p.numel() for p in encoder.parameters())
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert clf.n_trainable_backbone_params_ / total < 0.05
    assert clf.lora_target_modules_ == QKV
    assert clf.features_cached_ is False


def test_base_weights_unchanged_adapter_weights_changed(fitted):
    clf, before = fitted
    after = clf.net_.module_.encoder.state_dict()
    for name, value in before.items():
        adapted = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        torch.testing.assert_close(after.get(name, after.get(adapted)), value, msg=name)
    lora_b = [v for k, v in after.items() if ".lora_B." in k]
    assert len(lora_b) == 6 and all(v.abs().sum() > 0 for v in lora_b)  # lora_B starts at zero


def test_pickle_and_save_keep_only_adapters_and_head(fitted, text_data, tmp_path):
    clf, _ = fitted
    X, _ = text_data
    expected = clf.predict_proba(X)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    loaded = load(clf.save(tmp_path / "lora"))
    np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    from safetensors.torch import load_file

    stored = [k for k in load_file(str(tmp_path / "lora" / "model.safetensors")) if k.endswith("weight")]
    assert stored and all(".lora_" in k or k.startswith("head.") for k in stored)


@pytest.mark.parametrize("freeze_layers", ["all", "none"])
def test_all_and_none_adapt_every_block(lora_params, text_data, freeze_layers):
    clf = PretrainedTextClassifier(**{**lora_params, "freeze_layers": freeze_layers, "max_epochs": 1})
    clf.fit(*text_data)
    assert clf.lora_target_modules_ == QKV
    assert all(".lora_" in n for n, p in clf.net_.module_.encoder.named_parameters() if p.requires_grad)


def test_frozen_blocks_get_no_adapter(lora_params, text_data):
    # Blocks: embeddings, layer 0, layer 1; freezing two leaves adapters in layer 1 only.
    clf = PretrainedTextClassifier(**{**lora_params, "freeze_layers": 2, "max_epochs": 1}).fit(*text_data)
    assert clf.lora_target_modules_ == QKV[3:]
    assert all(name.startswith("model.encoder.layer.1.") for name in clf.lora_target_modules_)


def test_target_modules_override_and_no_match(lora_params, text_data):
    clf = PretrainedTextClassifier(**{**lora_params, "adapter": LoRA(r=1, target_modules=["value"]), "max_epochs": 1})
    assert clf.fit(*text_data).lora_target_modules_ == [QKV[2], QKV[5]]
    with pytest.raises(ValueError, match="no layer to adapt"):
        PretrainedTextClassifier(**{**lora_params, "adapter": LoRA(target_modules=["no_such_layer"])}).fit(*text_data)


def test_cnn_default_targets_are_pointwise(image_data, tiny_image_params):
    X, y = image_data[0][::2], image_data[1][::2]
    clf = PretrainedImageClassifier(**{**tiny_image_params, "max_epochs": 1}, adapter="lora").fit(X, y)
    modules = dict(clf.net_.module_.encoder.named_modules())
    assert clf.lora_target_modules_
    for name in clf.lora_target_modules_:
        base = modules[name].base_layer
        assert isinstance(base, torch.nn.Linear) or (base.kernel_size == (1, 1) and base.groups == 1)
    assert clf.predict(X).shape == (8,)


def test_unfreeze_every_is_rejected(lora_params, text_data):
    with pytest.raises(ValueError, match="unfreeze_every"):
        PretrainedTextClassifier(**lora_params, unfreeze_every=1).fit(*text_data)


def test_grid_search_tunes_the_adapters_nested_parameters(lora_params, text_data):
    X, y = text_data
    search = GridSearchCV(PretrainedTextClassifier(**{**lora_params, "max_epochs": 1}), {"adapter__r": [1, 2]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["adapter__r"] in (1, 2)
    assert search.best_estimator_.n_trainable_backbone_params_ == 6 * 2 * 32 * search.best_params_["adapter__r"]
    assert search.best_estimator_.adapter.r == search.best_params_["adapter__r"]


def test_the_short_spelling_is_the_default_adapter(lora_params, text_data):
    short = PretrainedTextClassifier(**{**lora_params, "adapter": "lora", "max_epochs": 1}).fit(*text_data)
    default = PretrainedTextClassifier(**{**lora_params, "adapter": LoRA(), "max_epochs": 1}).fit(*text_data)
    np.testing.assert_array_equal(short.predict_proba(text_data[0]), default.predict_proba(text_data[0]))


@pytest.mark.parametrize("adapter, match", [(LoRA(r=0), "'r' parameter of LoRA"), ("LoRA", "'adapter' parameter"),
                                            (LoRA(dropout=1.5), "'dropout' parameter of LoRA")])
def test_invalid_adapters_are_refused_naming_the_parameter(lora_params, text_data, adapter, match):
    with pytest.raises(ValueError, match=match):
        PretrainedTextClassifier(**{**lora_params, "adapter": adapter}).fit(*text_data)


def test_missing_peft_names_the_extra(lora_params, text_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` raise ImportError
    with pytest.raises(ImportError, match=r"pip install sktransfer\[lora\]"):
        PretrainedTextClassifier(**lora_params).fit(*text_data)

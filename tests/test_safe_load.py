"""load() reads data, never code: tampered folders raise ValueError and import or call nothing; nor do they reach
the network, poison the process-wide feature cache, or decide where predictions write."""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import socket
import sys
import uuid

import numpy as np
import pytest
import torch

import sktransfer
from sktransfer import (
    LoRA,
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
)

PROBE = "sktransfer_tamper_probe"


@pytest.fixture(scope="module")
def saved(image_data, tmp_path_factory):
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, max_epochs=1, random_state=0)
    return clf.fit(*image_data).save(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def copy_of(saved, tmp_path):
    import shutil

    def make(edit=None, text=None):
        folder = tmp_path / "tampered"
        shutil.copytree(saved, folder)
        if edit is not None:
            config = json.loads((folder / "config.json").read_text())
            edit(config)
            (folder / "config.json").write_text(json.dumps(config))
        if text is not None:
            (folder / "config.json").write_text(text)
        return folder

    return make


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module on sys.path that writes a marker file when imported, and a spy on importlib."""
    marker = tmp_path / "imported"
    (tmp_path / f"{PROBE}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass Boom:\n"
        f"    def __init__(self, **kw):\n        pathlib.Path({str(marker)!r}).write_text('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a, **k: imported.append(name) or real(name, *a, **k))
    yield marker, imported
    sys.modules.pop(PROBE, None)


@pytest.mark.parametrize("name", [f"{PROBE}.Boom", "os.system", "subprocess.Popen", "builtins.eval",
                                  "sktransfer.evil.PretrainedImageClassifier", "Boom",
                                  "sktransfer._image.PretrainedImageClassifier", "BackboneEstimator", "EmbedderBase"])
def test_unknown_class_raises_and_imports_nothing(copy_of, probe, name):
    marker, imported = probe
    folder = copy_of(lambda c: c.update({"class": name}))
    with pytest.raises(ValueError, match=r"config\.json.*not an sktransfer estimator"):
        sktransfer.load(folder)
    assert not marker.exists() and PROBE not in sys.modules
    assert not [m for m in imported if not m.startswith("sktransfer")]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("params"), "no 'params' entry"),
    (lambda c: c.pop("class"), "no 'class' entry"),
    (lambda c: c.pop("base"), "no 'base' entry"),
    (lambda c: c.update({"params": ["x"]}), "'params' entry has the wrong type"),
    (lambda c: c["params"].update({"__class__": "os.system"}), r"has no parameters \['__class__'\]"),
    (lambda c: c["params"].update({"batch_size": -3}), "batch_size"),
    (lambda c: c["fitted"].update({"__dict__": {}}), "unexpected fitted attribute names"),
    (lambda c: c["fitted"].pop("n_outputs_"), "n_outputs_"),
    (lambda c: c["fitted"].update({"n_outputs_": 5}), "Cannot load the model"),
])
def test_malformed_config_raises_value_error_naming_the_file(copy_of, edit, message, probe):
    folder = copy_of(edit)
    with pytest.raises(ValueError, match=message) as info:
        sktransfer.load(folder)
    assert str(folder) in str(info.value)
    assert not probe[0].exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff".encode("utf-8", "surrogateescape").decode("latin-1")])
def test_unreadable_json_raises_value_error(copy_of, text):
    folder = copy_of(text=text)
    with pytest.raises(ValueError, match="config.json"):
        sktransfer.load(folder)


def test_weights_that_do_not_fit_raise_value_error(copy_of, tmp_path):
    from safetensors.torch import save_file

    folder = copy_of()
    save_file({"head.layers.1.weight": torch.zeros(3, 7)}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"Cannot load the model in .*tampered"):
        sktransfer.load(folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Cannot load the model"):
        sktransfer.load(folder)


def test_load_builds_exactly_the_public_estimators():
    from sktransfer._persistence import _ESTIMATORS

    public = {name: getattr(sktransfer, name) for name in sktransfer.__all__ if name.startswith("Pretrained")}
    assert _ESTIMATORS == public


@pytest.mark.parametrize("kind", ["image", "text"])
def test_embedders_save_load_and_pickle_only_the_backbone_identity(kind, image_data, text_data, tiny_bert_dir,
                                                                   tmp_path):
    if kind == "image":
        embedder, X = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False), image_data[0]
    else:
        embedder, X = PretrainedTextEmbedder(backbone=tiny_bert_dir, max_length=16), text_data[0]
    expected = embedder.fit(X).transform(X)
    weights = sum(p.numel() * p.element_size() for p in embedder.encoder_.parameters())
    blob = pickle.dumps(embedder)
    assert len(blob) < weights / 2
    np.testing.assert_allclose(pickle.loads(blob).transform(X), expected, atol=1e-5)
    folder = embedder.save(tmp_path / "embedder")
    assert (folder / "model.safetensors").stat().st_size < weights / 2
    loaded = sktransfer.load(folder)
    assert type(loaded) is type(embedder) and loaded.n_features_out_ == embedder.n_features_out_
    np.testing.assert_allclose(loaded.transform(X), expected, atol=1e-5)


def test_embedder_with_a_user_module_pickles_its_weights(image_data, tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    embedder = PretrainedImageEmbedder(backbone=module).fit(image_data[0])
    expected = embedder.transform(image_data[0])
    np.testing.assert_allclose(pickle.loads(pickle.dumps(embedder)).transform(image_data[0]), expected, atol=1e-6)
    folder = embedder.save(tmp_path / "m")
    with pytest.raises(ValueError, match="pass them to load"):
        sktransfer.load(folder)
    np.testing.assert_allclose(sktransfer.load(folder, backbone=module).transform(image_data[0]), expected, atol=1e-6)


def test_loading_a_lora_model_adds_its_adapters_once(text_data, tiny_bert_dir, tmp_path):
    pytest.importorskip("peft")
    from sktransfer import PretrainedTextClassifier

    clf = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, max_epochs=1, random_state=0,
                                   adapter=LoRA(r=2)).fit(*text_data)
    folder = clf.save(tmp_path / "lora")
    before = torch.random.get_rng_state()
    loaded = sktransfer.load(folder)
    names = [n for n, _ in loaded.net_.module_.encoder.named_parameters() if ".lora_" in n]
    assert names == [n for n, _ in clf.net_.module_.encoder.named_parameters() if ".lora_" in n]
    assert torch.equal(before, torch.random.get_rng_state()), "loading must not draw on the global RNG"
    np.testing.assert_allclose(loaded.predict_proba(text_data[0]), clf.predict_proba(text_data[0]), atol=1e-6)
    assert isinstance(loaded.adapter, LoRA) and loaded.adapter.get_params() == clf.adapter.get_params()
    config = json.loads((folder / "config.json").read_text())
    for edit, message in [("os.system", r"which load\(\) does not build"), ("LoRA", "parameters do not fit")]:
        tampered = tmp_path / f"tampered_{len(message)}"
        shutil.copytree(folder, tampered)
        params = {**config["params"], "adapter": {"__object__": edit, "params": {"no_such": 1}}}
        (tampered / "config.json").write_text(json.dumps({**config, "params": params}))
        with pytest.raises(ValueError, match=message):
            sktransfer.load(tampered)


@pytest.fixture
def unique_texts(text_data):
    """The toy texts, tagged so that no earlier test's cached embeddings serve them."""
    tag = uuid.uuid4().hex
    return [f"{text} {tag}" for text in text_data[0]], text_data[1]


def test_a_folder_naming_a_backbone_identity_is_refused(saved, copy_of):
    assert "backbone_identity_" not in json.loads((saved / "config.json").read_text())["fitted"]
    folder = copy_of(lambda c: c["fitted"].update({"backbone_identity_": "timm:resnet18:True"}))
    with pytest.raises(ValueError, match=r"unexpected fitted attribute names \['backbone_identity_'\]"):
        sktransfer.load(folder)


def test_tampered_weights_never_reach_other_models_through_the_cache(unique_texts, tiny_text_params, tiny_bert_dir,
                                                                     tmp_path):
    from safetensors.torch import load_file, save_file

    from sktransfer._persistence import _fingerprint

    X, y = unique_texts
    folder = PretrainedTextClassifier(**tiny_text_params, freeze_layers="all").fit(X, y).save(tmp_path / "model")
    victim = PretrainedTextEmbedder(backbone=tiny_bert_dir, max_length=16).fit(X)
    assert sktransfer.load(folder).backbone_identity_ == victim.backbone_identity_  # an intact model shares the cache
    # The folder now also stores the (frozen) word embeddings, altered, with the fingerprint of the rest to match.
    tensors = load_file(str(folder / "model.safetensors"))
    name = "model.embeddings.word_embeddings.weight"
    pristine = victim.encoder_.state_dict()
    tensors[f"encoder.{name}"] = torch.randn_like(pristine[name])
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["encoder_fingerprint"] = _fingerprint({k: v for k, v in pristine.items() if f"encoder.{k}" not in tensors})
    (folder / "config.json").write_text(json.dumps(config))
    tampered = sktransfer.load(folder)
    assert tampered.backbone_identity_ != victim.backbone_identity_
    new = [f"{text} new" for text in X]
    poisoned = tampered.transform(new)  # first in the cache
    honest = PretrainedTextEmbedder(backbone=tiny_bert_dir, max_length=16, cache=False).fit(new).transform(new)
    assert not np.allclose(poisoned, honest, atol=1e-3)
    np.testing.assert_allclose(victim.transform(new), honest, atol=1e-6)


@pytest.fixture
def no_network(monkeypatch, tmp_path) -> list[str]:
    """Every attempt to reach the network (a name look-up, a connection, a hub or torch download), each refused;
    the Hugging Face and torch hub caches are empty folders."""
    import huggingface_hub

    attempts: list[str] = []

    def refuse(what):
        def call(*args, **kwargs):
            attempts.append(what)
            raise OSError(f"no network in this test ({what})")
        return call

    for owner, name in [(socket, "getaddrinfo"), (socket, "create_connection"), (socket.socket, "connect"),
                        (torch.hub, "download_url_to_file"), (huggingface_hub.file_download, "http_get")]:
        monkeypatch.setattr(owner, name, refuse(name))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch-hub"))
    return attempts


@pytest.mark.parametrize("backbone, pretrained", [("hf-hub:some-org/some-model", False), ("resnet18", True),
                                                  ("mobilenet_v3_small", True)])
def test_load_never_downloads_an_image_backbone_the_file_names(copy_of, no_network, backbone, pretrained):
    folder = copy_of(lambda c: c["params"].update({"backbone": backbone, "pretrained": pretrained}))
    with pytest.raises(ValueError, match=rf"never downloads: it needs the backbone '{backbone}' available locally"):
        sktransfer.load(folder)
    assert no_network == []


def test_load_never_downloads_a_text_backbone_the_file_names(text_data, tiny_text_params, tmp_path, no_network):
    folder = PretrainedTextClassifier(**tiny_text_params).fit(*text_data).save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["params"]["backbone"] = "some-org/some-model"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="never downloads: it needs the backbone 'some-org/some-model' available"):
        sktransfer.load(folder)
    assert no_network == []


def test_a_folder_never_says_where_predictions_write(image_data, tiny_image_params, copy_of, tmp_path):
    X, y = image_data
    fit_cache = tmp_path / "fit-cache"
    folder = PretrainedImageClassifier(**tiny_image_params, cache_dir=str(fit_cache)).fit(X, y).save(tmp_path / "m")
    assert "cache_dir" not in json.loads((folder / "config.json").read_text())["params"]
    written = sorted(fit_cache.rglob("*.npy"))
    loaded = sktransfer.load(folder)
    assert loaded.cache_dir is None
    loaded.predict(X)
    assert sorted(fit_cache.rglob("*.npy")) == written
    chosen = tmp_path / "chosen"
    sktransfer.load(folder, cache_dir=str(chosen)).predict(X)
    assert len(list(chosen.rglob("*.npy"))) == len(X)
    evil = tmp_path / "evil"
    with pytest.raises(ValueError, match=r"sets \['cache_dir'\].*pass cache_dir= to load\(\)"):
        sktransfer.load(copy_of(lambda c: c["params"].update({"cache_dir": str(evil)})))
    assert not evil.exists()

"""load() reads data, never code: tampered folders raise ValueError and import or call nothing."""

from __future__ import annotations

import importlib
import json
import pickle
import sys

import numpy as np
import pytest
import torch

import sktransfer
from sktransfer import PretrainedImageClassifier, PretrainedImageEmbedder, PretrainedTextEmbedder

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
                                  "sktransfer.evil.PretrainedImageClassifier", "Boom"])
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


def test_legacy_qualified_class_names_still_load(copy_of, image_data):
    folder = copy_of(lambda c: c.update({"class": "sktransfer._image.PretrainedImageClassifier"}))
    assert sktransfer.load(folder).predict(image_data[0]).shape == (len(image_data[0]),)


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
                                   adapter="lora", lora_r=2).fit(*text_data)
    folder = clf.save(tmp_path / "lora")
    before = torch.random.get_rng_state()
    loaded = sktransfer.load(folder)
    names = [n for n, _ in loaded.net_.module_.encoder.named_parameters() if ".lora_" in n]
    assert names == [n for n, _ in clf.net_.module_.encoder.named_parameters() if ".lora_" in n]
    assert torch.equal(before, torch.random.get_rng_state()), "loading must not draw on the global RNG"
    np.testing.assert_allclose(loaded.predict_proba(text_data[0]), clf.predict_proba(text_data[0]), atol=1e-6)

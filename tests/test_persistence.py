"""Pickle, save/load, ONNX export, warm_start and partial_fit."""

from __future__ import annotations

import json
import pickle
from unittest import mock

import joblib
import numpy as np
import pytest
import torch

import sktransfer
from sktransfer import PretrainedImageClassifier, PretrainedImageRegressor, PretrainedTextClassifier


@pytest.fixture
def image_clf(image_data, tiny_image_params):
    return PretrainedImageClassifier(**tiny_image_params).fit(*image_data)


@pytest.fixture
def text_clf(text_data, tiny_text_params):
    return PretrainedTextClassifier(**tiny_text_params, freeze_layers="all").fit(*text_data)


@pytest.fixture(scope="module")
def fine_tuned(image_data):
    """A fully fine-tuned tiny image classifier, fitted once for this module."""
    X, y = image_data[0][4:12], image_data[1][4:12]
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, max_epochs=1, random_state=0,
                                    freeze_layers="none")
    return clf.fit(X, y), X


def _encoder_size(clf) -> int:
    return sum(p.numel() * p.element_size() for p in clf.net_.module_.encoder.parameters())


def test_pickle_frozen_drops_backbone_weights(image_clf, image_data, text_clf, text_data):
    for clf, X in [(image_clf, image_data[0]), (text_clf, text_data[0])]:
        blob = pickle.dumps(clf)
        assert len(blob) < _encoder_size(clf) / 2
        loaded = pickle.loads(blob)
        np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)
        assert all(t.device.type == "cpu" for t in loaded.net_.module_.state_dict().values())


def test_pickle_fine_tuned_keeps_weights(fine_tuned, tmp_path):
    clf, X = fine_tuned
    joblib.dump(clf, tmp_path / "m.joblib")
    assert (tmp_path / "m.joblib").stat().st_size > _encoder_size(clf)
    loaded = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_pickle_user_module_backbone_keeps_weights(image_data):
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    clf = PretrainedImageClassifier(backbone=backbone, max_epochs=1, random_state=0).fit(*image_data)
    loaded = pickle.loads(pickle.dumps(clf))
    assert torch.equal(loaded.net_.module_.encoder.model[0].weight, backbone[0].weight)
    np.testing.assert_allclose(loaded.predict_proba(image_data[0]), clf.predict_proba(image_data[0]), atol=1e-6)


def test_pickle_detects_a_changed_backbone(image_clf):
    state = image_clf.__getstate__()
    stored, _ = state["_encoder_state"]
    state["_encoder_state"] = (stored, "0" * 64)
    with pytest.raises(ValueError, match="no longer gives the weights"):
        type(image_clf).__new__(type(image_clf)).__setstate__(state)


def test_pickled_cuda_model_loads_on_cpu(image_clf, image_data):
    state = image_clf.__getstate__()
    state["device_"] = "cuda"
    with mock.patch("torch.cuda.is_available", return_value=False):
        loaded = type(image_clf).__new__(type(image_clf))
        loaded.__setstate__(state)
    assert loaded.device_ == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(image_data[0]), image_clf.predict_proba(image_data[0]), atol=1e-6)


def test_pickle_partly_frozen_stores_trained_blocks_only(text_data, tiny_text_params):
    clf = PretrainedTextClassifier(**tiny_text_params, freeze_layers=-1).fit(*text_data)
    stored, fingerprint = clf.__getstate__()["_encoder_state"]
    assert fingerprint is not None and stored
    assert all(k.startswith("model.encoder.layer.1.") or k.startswith("model.pooler.") for k in stored)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(loaded.predict_proba(text_data[0]), clf.predict_proba(text_data[0]), atol=1e-6)


@pytest.mark.parametrize("schedule", ["linear", "onecycle"])
def test_pickle_stores_fine_tuned_weights_once(text_data, tiny_text_params, schedule):
    # A schedule's state must not carry the optimizer, and with it a second copy of the weights.
    params = {**tiny_text_params, "freeze_layers": "none"}
    plain = PretrainedTextClassifier(**params).fit(*text_data)
    scheduled = PretrainedTextClassifier(**params, lr_schedule=schedule, warmup=0.1).fit(*text_data)
    weights = sum(p.numel() * p.element_size() for p in plain.net_.module_.parameters())
    assert abs(len(pickle.dumps(scheduled)) - len(pickle.dumps(plain))) < 0.1 * weights


@pytest.mark.parametrize("frozen", [True, False])
def test_save_load_image(image_clf, image_data, fine_tuned, tmp_path, frozen):
    clf, X = (image_clf, image_data[0]) if frozen else fine_tuned
    clf.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["class"].endswith("PretrainedImageClassifier")
    assert {"sktransfer", "torch", "timm", "transformers", "skorch", "scikit-learn"} <= set(config["versions"])
    loaded = sktransfer.load(tmp_path / "model")
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    weights = (tmp_path / "model" / "model.safetensors").stat().st_size
    assert (weights < _encoder_size(clf) / 2) == frozen


def test_save_load_text_and_regressor(text_clf, text_data, image_data, tiny_image_params, tmp_path):
    text_clf.save(tmp_path / "text")
    loaded = sktransfer.load(tmp_path / "text")
    np.testing.assert_allclose(loaded.predict_proba(text_data[0]), text_clf.predict_proba(text_data[0]), atol=1e-6)
    X = image_data[0]
    reg = PretrainedImageRegressor(**tiny_image_params).fit(X, X.mean(axis=(1, 2, 3)))
    reg.save(tmp_path / "reg")
    np.testing.assert_allclose(sktransfer.load(tmp_path / "reg").predict(X), reg.predict(X), rtol=1e-5)


def test_load_warns_on_version_mismatch_and_needs_module(image_clf, tmp_path):
    path = image_clf.save(tmp_path / "model")
    config = json.loads((path / "config.json").read_text())
    config["versions"]["torch"] = "0.0.1"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match=r"torch 0\.0\.1 -> "):
        sktransfer.load(path)
    with pytest.raises(ValueError, match="not a directory written by save"):
        sktransfer.load(tmp_path)


def test_save_load_user_module_needs_backbone(image_data, tmp_path):
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    clf = PretrainedImageClassifier(backbone=backbone, max_epochs=1, random_state=0).fit(*image_data)
    clf.save(tmp_path / "m")
    with pytest.raises(ValueError, match=r"pass them to load\(\): \['backbone'\]"):
        sktransfer.load(tmp_path / "m")
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    loaded = sktransfer.load(tmp_path / "m", backbone=fresh)
    np.testing.assert_allclose(loaded.predict_proba(image_data[0]), clf.predict_proba(image_data[0]), atol=1e-6)


def test_export_onnx_image(fine_tuned, tmp_path):
    import onnxruntime as ort

    clf, X = fine_tuned
    path = clf.export_onnx(tmp_path / "image.onnx")
    pixels = torch.stack([clf._make_dataset(list(X))[i][0]["pixel_values"] for i in range(len(X))])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {"pixel_values": pixels.numpy()})
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-4)


def test_export_onnx_text(text_clf, text_data, tmp_path):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    path = text_clf.export_onnx(tmp_path / "text.onnx")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    X = text_data[0]
    tokens = tokenizer(X, padding=True, truncation=True, max_length=text_clf.max_length, return_tensors="np")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]})
    np.testing.assert_allclose(proba, text_clf.predict_proba(X), atol=1e-4)


def test_export_onnx_without_onnx_installed(image_clf, tmp_path):
    with mock.patch.dict("sys.modules", {"onnx": None}):
        with pytest.raises(ImportError, match=r"pip install sktransfer\[onnx\]"):
            image_clf.export_onnx(tmp_path / "m.onnx")


def test_warm_start_continues(image_data, tiny_image_params):
    X, y = image_data
    params = {**tiny_image_params, "lr": 1e-2, "C": None}
    first = PretrainedImageClassifier(**params).fit(X, y)
    first_losses = first.history_[:, "train_loss"]
    cold = PretrainedImageClassifier(**params).fit(X, y).fit(X, y)
    np.testing.assert_allclose(cold.history_[:, "train_loss"], first_losses, rtol=1e-5)
    head = first.net_.module_.head.layers[-1].weight.detach().clone()
    first.set_params(warm_start=True).fit(X, y)
    assert first.history_[0, "train_loss"] < first_losses[0]
    assert not torch.equal(first.net_.module_.head.layers[-1].weight, head)


def test_partial_fit(image_data, tiny_image_params):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params)
    with pytest.raises(ValueError, match="single class"):
        clf.partial_fit(X[:8], y[:8])
    clf.partial_fit(X[:8], y[:8], classes=["dark", "light"])
    assert clf.classes_.tolist() == ["dark", "light"] and clf.n_epochs_ == 1
    head = clf.net_.module_.head
    losses = []
    for _ in range(5):
        clf.partial_fit(X[8:], y[8:])
        losses.append(clf.history_[-1, "train_loss"])
    assert clf.net_.module_.head is head and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="classes must stay"):
        clf.partial_fit(X, y, classes=["a", "b"])
    with pytest.raises(ValueError, match=r"labels not in classes: \['grey'\]"):
        clf.partial_fit(X[:2], ["dark", "grey"])

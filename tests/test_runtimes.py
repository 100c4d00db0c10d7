"""Inference runtimes (``runtime=``): ONNX Runtime and OpenVINO run the fitted backbone; outputs match PyTorch."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import (
    ONNXRuntime,
    OpenVINO,
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
    load,
    quantize_int8,
)
from sktransfer._runtimes import Session

pytest.importorskip("onnxruntime")
needs_openvino = pytest.mark.skipif(pytest.importorskip("importlib").util.find_spec("openvino") is None,
                                    reason="openvino is not installed")


def _close(a, b, rtol=1e-4):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b)) < rtol


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
def test_text_embedder_matches_pytorch(runtime, tiny_text_params, text_data):
    X, _ = text_data
    params = {k: v for k, v in tiny_text_params.items() if k in ("backbone", "max_length")}
    torch_out = PretrainedTextEmbedder(**params, cache=False).fit(X).transform(X)
    embedder = PretrainedTextEmbedder(**params, runtime=runtime).fit(X)
    assert isinstance(embedder.runtime_, Session)
    assert embedder.runtime_deviation_ < 1e-4
    assert _close(embedder.transform(X), torch_out)


def test_image_classifier_predicts_as_pytorch(tiny_image_params, image_data):
    X, y = image_data
    reference = PretrainedImageClassifier(**tiny_image_params).fit(X, y)
    clf = PretrainedImageClassifier(**tiny_image_params, runtime="onnxruntime").fit(X, y)
    assert _close(clf.predict_proba(X), reference.predict_proba(X))
    np.testing.assert_array_equal(clf.predict(X), reference.predict(X))
    assert clf.score(X, y) == reference.score(X, y)


def test_the_runtime_runs_inference(tiny_image_params, image_data, monkeypatch):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params, runtime="onnxruntime").fit(X, y)
    calls = []
    run = type(clf.runtime_)._run
    monkeypatch.setattr(type(clf.runtime_), "_run", lambda self, inputs: calls.append(1) or run(self, inputs))
    clf.predict(X)
    clf.transform(X)
    assert len(calls) >= 2


def _smooth_images(n: int, size: int = 64) -> np.ndarray:
    """Coloured discs on shaded backgrounds: images whose activations int8 calibration can represent
    (random-noise images through random weights give degenerate ranges)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < (r / 2) ** 2)[..., None]
        images.append(np.where(disc, rng.uniform(0, 255, 3), rng.uniform(0, 255, 3) * (0.5 + 0.5 * xx[..., None])))
    return np.stack(images).astype(np.uint8)


@pytest.mark.parametrize("runtime", [ONNXRuntime(int8=True), pytest.param(OpenVINO(int8=True), marks=needs_openvino)])
def test_static_int8_of_a_cnn_changes_the_numbers_a_little(runtime):
    X = _smooth_images(16)
    reference = PretrainedImageEmbedder().fit(X).transform(X)  # the packaged efficientnet_lite0
    embedder = PretrainedImageEmbedder(runtime=clone(runtime).set_params(calibration_size=16)).fit(X)
    out = embedder.transform(X)
    assert 0.01 < embedder.runtime_deviation_ < 0.5
    cosine = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.8
    if isinstance(runtime, ONNXRuntime):
        assert b"QuantizeLinear" in embedder.runtime_.files["model.onnx"]


def test_text_int8_is_dynamic(tiny_text_params, text_data):
    X, y = text_data
    clf = PretrainedTextClassifier(**tiny_text_params, runtime=ONNXRuntime(int8=True)).fit(X, y)
    graph = clf.runtime_.files["model.onnx"]
    assert b"DynamicQuantizeLinear" in graph or b"MatMulInteger" in graph
    assert clf.predict(X).shape == (len(X),)


def test_pickle_and_save_load_keep_the_compiled_model(tiny_text_params, text_data, tmp_path):
    X, y = text_data
    reg = PretrainedTextRegressor(**tiny_text_params, runtime=ONNXRuntime(int8=True))
    reg.fit(X, np.arange(len(X), dtype=float))
    expected = reg.predict(X)
    copy = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(copy.predict(X), expected)
    loaded = load(reg.save(tmp_path / "model"))
    assert isinstance(loaded.runtime_, Session) and loaded.runtime.int8
    np.testing.assert_array_equal(loaded.predict(X), expected)  # the int8 graph itself was kept, not redone


def test_load_with_a_runtime_the_model_was_not_saved_with(tiny_text_params, text_data, tmp_path):
    X, y = text_data
    path = PretrainedTextClassifier(**tiny_text_params).fit(X, y).save(tmp_path / "plain")
    with pytest.raises(ValueError, match="saved without one"):
        load(path, runtime="onnxruntime")


def test_partial_fit_and_warm_start_recompile(tiny_text_params, text_data):
    X, y = text_data
    clf = PretrainedTextClassifier(**tiny_text_params, freeze_layers="none", C=None, runtime="onnxruntime",
                                   warm_start=True)
    clf.partial_fit(X, y, classes=["neg", "pos"])
    first = clf.runtime_
    clf.partial_fit(X, y)
    assert clf.runtime_ is not first
    clf.fit(X, y)
    encoder = clf._fitted_encoder()
    assert _close(clf.transform(X), clf._encode(list(X), encoder, encoder))  # the session of the trained weights


def test_grid_search_in_a_pipeline(tiny_image_params, image_data):
    X, y = image_data
    search = GridSearchCV(make_pipeline(PretrainedImageClassifier(**tiny_image_params, runtime="onnxruntime")),
                          {"pretrainedimageclassifier__C": [0.1, 1.0]}, cv=2).fit(X, y)
    assert isinstance(search.best_estimator_[-1].runtime_, Session)
    assert search.predict(X).shape == (len(X),)


def test_missing_package_names_the_extra(tiny_image_params, image_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install sktransfer\[openvino\]"):
        PretrainedImageClassifier(**tiny_image_params, runtime="openvino").fit(*image_data)


@pytest.mark.parametrize("make", [PretrainedImageClassifier, PretrainedImageEmbedder])
def test_runtime_none_needs_no_runtime_package(make, tiny_image_params, image_data, monkeypatch):
    for package in ("onnx", "onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, package, None)
    params = tiny_image_params if make is PretrainedImageClassifier else {}  # the embedder: packaged weights
    model = make(**params).fit(*image_data)
    assert model.runtime_ is None and model.runtime_deviation_ is None


def test_bad_runtime_values():
    with pytest.raises(ValueError, match="runtime"):
        PretrainedTextEmbedder(runtime="tensorrt").fit(["a"])
    with pytest.raises(ValueError, match="calibration_size"):
        PretrainedTextEmbedder(runtime=ONNXRuntime(calibration_size=0)).fit(["a"])


class _Branchy(torch.nn.Module):
    """Data-dependent control flow: tracing keeps the branch of the example input, so the export differs."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)

    def forward(self, pixel_values):
        features = pixel_values.mean(dim=(2, 3))
        if features.mean() > 0:
            return self.linear(features)
        return -self.linear(features)


def test_a_backbone_that_does_not_convert_says_why(image_data):
    X, _ = image_data
    with pytest.raises(ValueError, match="does not convert faithfully"):
        PretrainedImageEmbedder(backbone=_Branchy(), runtime="onnxruntime").fit(X)


def test_quantize_int8_refuses_a_runtime(tiny_text_params, text_data):
    X, _ = text_data
    embedder = PretrainedTextEmbedder(backbone=tiny_text_params["backbone"], max_length=16, runtime="onnxruntime")
    embedder.fit(X)
    with pytest.raises(ValueError, match="runtime"):
        quantize_int8(embedder)

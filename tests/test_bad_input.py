"""Bad input fails early with a clear ValueError/TypeError; odd but valid input works."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

from conftest import write_png_files
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
)
from sktransfer._net import TransferNetClassifier


def _image_files(tmp_path, n=8):
    return write_png_files(tmp_path, n, 24), ["a", "b"] * (n // 2)


def _truncated_jpeg(tmp_path):
    """A JPEG whose header is intact but whose data stops half-way: it fails only when decoded."""
    path = tmp_path / "truncated.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


@pytest.fixture
def fitted_image(image_data, tiny_image_params):
    X, y = image_data
    return PretrainedImageClassifier(**tiny_image_params).fit(X, y)


@pytest.fixture
def estimators(tiny_image_params, tiny_text_params, image_data, text_data):
    return [
        (PretrainedImageClassifier(**tiny_image_params), *image_data),
        (PretrainedTextClassifier(**tiny_text_params), *text_data),
    ]


def test_empty_x(estimators):
    for est, X, y in estimators:
        with pytest.raises(ValueError, match="X is empty"):
            est.fit(X[:0], y[:0])


def test_length_mismatch(estimators):
    for est, X, y in estimators:
        with pytest.raises(ValueError, match="different lengths: 12 inputs but 11 targets"):
            est.fit(X[:12], y[:11])


def test_single_class(estimators):
    for est, X, y in estimators:
        with pytest.raises(ValueError, match="single class"):
            est.fit(X[:4], ["x"] * 4)


@pytest.mark.parametrize("bad", [None, float("nan")])
def test_missing_labels(estimators, bad):
    for est, X, y in estimators:
        labels = list(y[:6])
        labels[3] = bad
        with pytest.raises(ValueError, match=r"missing labels \(None or NaN\) at positions \[3\]"):
            est.fit(X[:6], labels)


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        (None, TypeError, "Text 1 is None"),
        ("", ValueError, "Text 1 is empty"),
        ("   ", ValueError, "Text 1 is empty"),
        (3.5, TypeError, "Text 1 is 3.5 of type float, not str"),
        (b"bytes", TypeError, r"Text 1 is bytes, not str: decode it first"),
    ],
)
def test_bad_text_entries(tiny_text_params, entry, error, message):
    with pytest.raises(error, match=message):
        PretrainedTextClassifier(**tiny_text_params).fit(["good film", entry, "bad film"], ["p", "n", "n"])


def test_single_string_instead_of_list(tiny_text_params):
    with pytest.raises(TypeError, match="collection of texts, not a single str"):
        PretrainedTextClassifier(**tiny_text_params).fit("good film", ["p"])


def test_missing_file(tmp_path, tiny_image_params):
    paths, y = _image_files(tmp_path, 4)
    paths[2] = str(tmp_path / "nope.png")
    with pytest.raises(ValueError, match=r"Image 2: file not found: .*nope\.png"):
        PretrainedImageClassifier(**tiny_image_params).fit(paths, y)


def test_not_an_image_and_corrupt_file(tmp_path, tiny_image_params):
    paths, y = _image_files(tmp_path, 4)
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a text file renamed .jpg")
    with pytest.raises(ValueError, match=r"Cannot read image 1 \(.*notes\.jpg'\).*fix or remove"):
        PretrainedImageClassifier(**tiny_image_params).fit([paths[0], str(fake), *paths[2:]], y)
    truncated_png = tmp_path / "half.png"
    truncated_png.write_bytes((tmp_path / "0000.png").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"Cannot read image 3 \(.*half\.png'\)"):
        PretrainedImageClassifier(**tiny_image_params).fit([*paths[:3], str(truncated_png)], y)


def test_corrupt_image_raises_before_training_when_fine_tuning(tmp_path, tiny_image_params):
    paths, y = _image_files(tmp_path, 6)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    paths[4] = str(bad)
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none")
    with mock.patch.object(TransferNetClassifier, "fit", side_effect=AssertionError("training started")):
        with pytest.raises(ValueError, match=r"Cannot read image 4 \(.*bad\.png'\)"):
            clf.fit(paths, y)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_decode_error_in_dataloader_is_clear(tmp_path, tiny_image_params, num_workers):
    paths, y = _image_files(tmp_path, 6)
    paths[5] = _truncated_jpeg(tmp_path)
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", num_workers=num_workers)
    with pytest.raises(ValueError, match=r"Cannot read image \d \(.*truncated\.jpg'\).*truncated"):
        clf.fit(paths, y)


def test_failing_item_mid_predict_raises(tmp_path, fitted_image):
    paths, _ = _image_files(tmp_path, 6)
    paths[3] = _truncated_jpeg(tmp_path)
    with pytest.raises(ValueError, match=r"Cannot read image 3 \(.*truncated\.jpg'\)"):
        fitted_image.predict(paths)


def _save_modes(tmp_path):
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    files = {
        "gray16.png": Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)),
        "cmyk.jpg": rgb.convert("CMYK"),
        "rgba.png": rgb.convert("RGBA"),
        "la.png": rgb.convert("LA"),
        "palette.png": rgb.convert("P"),
    }
    paths = []
    for name, image in files.items():
        image.save(tmp_path / name)
        paths.append(str(tmp_path / name))
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return [*paths, str(tmp_path / "anim.gif")]


def test_image_modes_are_converted(tmp_path, tiny_image_params):
    paths = _save_modes(tmp_path)
    emb = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False)
    features = emb.fit_transform(paths)
    assert features.shape == (6, emb.n_features_out_) and np.isfinite(features).all()
    # The animated GIF is read at its first (red) frame.
    red = emb.transform([np.full((20, 20, 3), (255, 0, 0), dtype=np.uint8)])
    np.testing.assert_allclose(features[5], red[0], atol=1e-5)
    # A fully transparent RGBA image is composited on white.
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(clear)
    white = np.full((20, 20, 3), 255, dtype=np.uint8)
    np.testing.assert_allclose(emb.transform([str(clear)]), emb.transform([white]), atol=1e-5)
    clf = PretrainedImageClassifier(**tiny_image_params).fit(paths, list("abcabc"))
    assert clf.predict(paths).shape == (6,)


def test_grayscale_and_float_arrays(image_data):
    X = image_data[0][:4]
    emb = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit(X)
    gray = X[..., 0]
    np.testing.assert_allclose(emb.transform(list(gray)), emb.transform(np.repeat(gray[..., None], 3, -1)), atol=1e-5)
    expected = emb.transform(X)
    # Rule: floats with max <= 1 are [0, 1]; larger floats are [0, 255].
    np.testing.assert_allclose(emb.transform(X / 255.0), expected, atol=1e-5)
    np.testing.assert_allclose(emb.transform(X.astype(np.float32)), expected, atol=1e-5)
    assert not np.allclose(emb.transform(X / 255.0 * 2), expected, atol=1e-3)


@pytest.mark.parametrize(
    "X", [np.zeros((4, 8, 8, 5), np.uint8), np.zeros((4, 8), np.uint8), [np.zeros((8, 8, 2), np.uint8)]]
)
def test_wrongly_shaped_arrays(X, tiny_image_params):
    with pytest.raises(ValueError, match=r"shape .* \(H, W\)|\(N, H, W, C\)"):
        PretrainedImageClassifier(**tiny_image_params).fit(X, ["a"] * len(X))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"freeze_layers": "some"}, "freeze_layers"),
        ({"lr": -0.1}, "'lr' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"backbone": "efficientnet_lite"}, "Did you mean 'efficientnet_lite"),
    ],
)
def test_invalid_hyperparameters(params, message, image_data, tiny_image_params):
    X, y = image_data
    with pytest.raises(ValueError, match=message):
        PretrainedImageClassifier(**{**tiny_image_params, **params}).fit(X, y)


def test_invalid_text_hyperparameters(text_data, tiny_text_params):
    with pytest.raises(ValueError, match="'max_length' parameter"):
        PretrainedTextClassifier(**{**tiny_text_params, "max_length": 0}).fit(*text_data)


def test_predict_before_fit(image_data, tiny_text_params):
    with pytest.raises(NotFittedError):
        PretrainedImageClassifier().predict(image_data[0])
    with pytest.raises(NotFittedError):
        PretrainedTextClassifier(**tiny_text_params).predict_proba(["good"])


def test_unseen_labels_at_score(fitted_image, image_data):
    X, y = image_data
    with pytest.raises(ValueError, match=r"labels not seen during fit: \['medium'\]"):
        fitted_image.score(X[:2], ["dark", "medium"])


def test_very_long_text_is_truncated(text_data, tiny_text_params):
    X, y = text_data
    clf = PretrainedTextClassifier(**tiny_text_params).fit(X, y)
    long_text = " ".join(["good film"] * 5000)
    assert clf.predict_proba([long_text, "bad"]).shape == (2, 2)

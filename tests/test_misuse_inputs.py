"""Misuse battery, data: bad targets, inputs and image files end in a clear ValueError/TypeError that names the
problem and the fix (as scikit-learn's do), never in a torch error from deep inside and never in silently wrong
results; odd but valid data works. Parameters, fitted state and saved folders: ``test_misuse_params.py``.
Tests that are not about one modality use the tiny text backbone, whose fits take a fraction of a second.
"""

from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning

from _misuse import (
    CLASSIFIERS,
    EMBEDDERS,
    MULTILABEL,
    REGRESSORS,
    estimator_factory,
    fitted_image_classifier,
    fitted_text_classifier,
)
from conftest import write_png_files
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
)
from sktransfer._net import TransferNetClassifier


@pytest.fixture
def make(tiny_bert_dir, image_data, text_data):
    return estimator_factory(tiny_bert_dir, image_data, text_data)


@pytest.fixture(scope="module")
def fitted_image():
    return fitted_image_classifier()


@pytest.fixture(scope="module")
def fitted_text(tiny_bert_dir):
    return fitted_text_classifier(tiny_bert_dir)


# ------------------------------------------------------------------------------------------------ targets
@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_classifier_rejects_continuous_targets_that_a_regressor_takes(make, cls):
    """scikit-learn's check_classification_targets: many distinct floats are a regression target."""
    clf, X, _ = make(cls)
    y = np.linspace(0.0, 1.0, len(X))
    with pytest.raises(ValueError, match="Unknown label type: continuous.*regressor"):
        clf.fit(X, y)
    make(REGRESSORS[CLASSIFIERS.index(cls)])[0].fit(X, y)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_classifier_ravels_a_column_vector_y_with_a_warning(make, cls):
    """column_or_1d(y, warn=True), as scikit-learn's classifiers: an (n, 1) y is raveled, with a warning."""
    clf, X, y = make(cls)
    with pytest.warns(DataConversionWarning, match="ravel"):
        clf.fit(X, y[:, None])
    assert clf.classes_.tolist() == sorted(set(y.tolist()))
    assert clf.predict(X[:3]).shape == (3,)
    assert clf.score(X, y[:, None]) == clf.score(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)  # a 1-D y: no warning
        clf.fit(X, y)


@pytest.mark.parametrize("cls", REGRESSORS)
def test_regressor_keeps_a_column_vector_y_two_dimensional(make, cls):
    """A 2-D y of one column is one target of a multi-output regressor: predictions keep y's (n, 1) shape,
    as LinearRegression's and KNeighborsRegressor's do."""
    reg, X, y = make(cls)
    reg.fit(X, y[:, None])
    assert reg.predict(X[:3]).shape == (3, 1)


@pytest.mark.parametrize("cls", CLASSIFIERS)
@pytest.mark.parametrize(
    ("n", "make_y", "message"),
    [
        (12, lambda y: y[:11], "different lengths: 12 inputs but 11 targets"),
        (4, lambda y: ["x"] * 4, "single class"),
        (6, lambda y: [*y[:3], None, *y[4:6]], r"missing labels \(None or NaN\) at positions \[3\]"),
        (6, lambda y: [*y[:3], float("nan"), *y[4:6]], r"missing labels \(None or NaN\) at positions \[3\]"),
    ],
    ids=["length-mismatch", "single-class", "missing-None", "missing-NaN"],
)
def test_classifier_rejects_labels_that_do_not_fit_X(make, cls, n, make_y, message):
    clf, X, y = make(cls)
    with pytest.raises(ValueError, match=message):
        clf.fit(X[:n], make_y(list(y)))


@pytest.mark.parametrize(
    ("make_y", "error", "message"),
    [
        # A 2-D int y with two distinct values passes type_of_target as "multilabel-indicator"; 2 is no BCE target.
        (lambda n: np.where(MULTILABEL[:n] == 1, 2, 0), ValueError, "only 0 and 1"),
        (lambda n: MULTILABEL[:n] + 1, ValueError, "only 0 and 1"),
        (lambda n: MULTILABEL[:n] / 2, ValueError, r"continuous|0/1 indicator"),
        # Several label columns are multi-task outputs (see test_multitask.py); each needs two classes.
        (lambda n: np.column_stack([np.arange(n) % 3, np.zeros(n, dtype=int)]), ValueError, "has a single class"),
        (lambda n: np.zeros((n, 2, 2)), ValueError, r"1-D labels or a 2-D 0/1 indicator"),
        (lambda n: np.r_[np.zeros(n // 2), np.ones(n - n // 2 - 1), np.inf], ValueError, "NaN or infinite"),
        (lambda n: np.array(["a", 1] * (n // 2), dtype=object), TypeError, "mixes label types"),
        (lambda n: 3, ValueError, "y must be an array-like"),
        (lambda n: {"pos": 0, "neg": 1}, ValueError, "y must be an array-like"),
    ],
    ids=["values-0-2", "values-1-2", "fractions", "multioutput-one-class", "3-D", "inf", "object-mix", "scalar",
         "dict"],
)
def test_classifier_rejects_bad_targets(make, make_y, error, message):
    clf, X, _ = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the error alone, no numpy warning on the way
        with pytest.raises(error, match=message):
            clf.fit(X, make_y(len(X)))


@pytest.mark.parametrize(
    ("make_y", "message"),
    [
        (lambda n: np.zeros((n, 2, 2)), r"1-D .* or 2-D"),
        (lambda n: np.r_[np.arange(n - 1.0), np.nan], "NaN or infinite"),
        (lambda n: np.r_[np.arange(n - 1.0), -np.inf], "NaN or infinite"),
        (lambda n: np.arange(n) + 1j, "complex"),
        (lambda n: 3.0, "y must be an array-like"),
    ],
    ids=["3-D", "nan", "inf", "complex", "scalar"],
)
def test_regressor_rejects_bad_targets(make, make_y, message):
    reg, X, _ = make(PretrainedTextRegressor)
    with pytest.raises(ValueError, match=message):
        reg.fit(X, make_y(len(X)))


def test_boolean_labels_round_trip(make):
    clf, X, y = make()
    clf.fit(X, y == "pos")
    assert clf.classes_.tolist() == [False, True]
    assert clf.predict(X[:2]).dtype == bool


def test_score_checks_its_targets(fitted_image, fitted_text):
    text_clf, texts, _ = fitted_text
    with pytest.raises(ValueError, match="1-D"):
        text_clf.score(texts, MULTILABEL[: len(texts)])
    image_clf, images, _ = fitted_image
    with pytest.raises(ValueError, match=r"labels not seen during fit: \['medium'\]"):
        image_clf.score(images[:2], ["dark", "medium"])


# ------------------------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("method", ["fit", "predict", "predict_proba", "transform"])
def test_empty_input(fitted_image, fitted_text, method):
    for clf, X, y in (fitted_image, fitted_text):
        with pytest.raises(ValueError, match="X is empty"):
            clone(clf).fit(X[:0], y[:0]) if method == "fit" else getattr(clf, method)(X[:0])


@pytest.mark.parametrize(
    ("X", "message"),
    [
        ([np.zeros((0, 0, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], "no pixels"),
        (np.zeros((2, 0, 4, 3), np.uint8), "no pixels"),
        # Already normalised pixels (ImageNet mean/std, or [-0.5, 0.5]) would be clipped silently.
        (np.linspace(-0.5, 0.5, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3), r"\[0, 1\] or \[0, 255\]"),
        (np.linspace(0, 510, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3), r"\[0, 1\] or \[0, 255\]"),
        # 12-bit data in an int32 array would be clipped to white.
        (np.linspace(0, 4095, 2 * 8 * 8 * 3).astype(np.int32).reshape(2, 8, 8, 3), r"\[0, 255\]"),
        ([np.full((8, 8, 3), np.nan), np.zeros((8, 8, 3))], "NaN"),
        (np.zeros((4, 8, 8, 5), np.uint8), r"shape .* \(H, W\)|\(N, H, W, C\)"),
        (np.zeros((4, 8), np.uint8), r"shape .* \(H, W\)|\(N, H, W, C\)"),
        ([np.zeros((8, 8, 2), np.uint8)], r"shape .* \(H, W\)|\(N, H, W, C\)"),
    ],
    ids=["empty-image", "empty-array", "normalised-floats", "floats-over-255", "int-over-255", "nan",
         "5-channels", "2-D-batch", "2-channels"],
)
def test_image_arrays_are_checked(X, message):
    with pytest.raises(ValueError, match=message):
        PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit_transform(X)


def test_odd_but_valid_images_work():
    """Images of different sizes in one list, a 1x1 image and a grayscale one are resized like any other."""
    X = [np.zeros((1, 1, 3), np.uint8), np.full((40, 17, 3), 200, np.uint8), np.full((9, 60), 90, np.uint8)]
    features = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit_transform(X)
    assert features.shape[0] == 3 and np.isfinite(features).all()


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


def test_image_dataframe_with_several_columns(make):
    clf, X, y = make(PretrainedImageClassifier)
    with pytest.raises(ValueError, match="one column"):
        clf.fit(pd.DataFrame({"image": list(X), "other": list(X)}), y)


def test_image_dataframe_with_one_column_is_its_column(tmp_path):
    """A one-column DataFrame (what a ColumnTransformer passes for ["path"]) is read as its column, not as
    its column names (texts already are)."""
    paths = write_png_files(tmp_path, 3, 16)
    emb = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False)
    expected = emb.fit_transform(paths)
    np.testing.assert_allclose(emb.transform(pd.DataFrame({"path": paths})), expected, atol=1e-6)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_unordered_collections_are_rejected(make, cls, tmp_path):
    """A set has no order: its items would not line up with y."""
    clf, X, y = make(cls)
    if cls is PretrainedImageClassifier:
        X = write_png_files(tmp_path, len(X), 8)
    with pytest.raises(TypeError, match="set"):
        clf.fit(set(X), y)


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        ([[255, 0, 0], [0, 255, 0]], TypeError, "unsupported type list"),
        (["good film", "bad film"], ValueError, r"file not found: 'good film'"),
        (torch.zeros(2, 8, 8, 3), TypeError, "unsupported type Tensor"),
        (None, TypeError, "not a collection of images"),
    ],
    ids=["nested-lists", "texts", "torch-tensor", "none"],
)
def test_wrong_image_input_types(make, X, error, message):
    clf, _, _ = make(PretrainedImageClassifier)
    with pytest.raises(error, match=message):
        clf.fit(X, ["a", "b"])


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        ([["good", "film"], ["bad", "film"]], TypeError, "Text 0 is .* of type list, not str"),
        (pd.Series(["good film", np.nan]), TypeError, "Text 1 is nan of type float"),
        (pd.Series(["good film", None], dtype="string"), TypeError, "Text 1 is <NA>"),
        (pd.DataFrame({"a": ["good", "bad"], "b": ["film", "film"]}), ValueError, "one column"),
        (np.array([["good", "bad"], ["film", "film"]]), ValueError, "one-dimensional"),
        ([0, 1], TypeError, "Text 0 is 0 of type int"),
        (["good film", 3.5], TypeError, "Text 1 is 3.5 of type float, not str"),
        (["good film", None], TypeError, "Text 1 is None"),
        (["good film", ""], ValueError, "Text 1 is empty"),
        (["good film", "   "], ValueError, "Text 1 is empty"),
        (["good film", b"bytes"], TypeError, r"Text 1 is bytes, not str: decode it first"),
        ("good film", TypeError, "collection of texts, not a single str"),
        (None, TypeError, "not a collection of texts"),
    ],
    ids=["nested-lists", "nan", "pd-NA", "dataframe-2-columns", "2-D-array", "ints", "float", "None-entry", "empty",
         "blank", "bytes", "a-single-str", "none"],
)
def test_wrong_text_input_types(make, X, error, message):
    clf, _, _ = make()
    with pytest.raises(error, match=message):
        clf.fit(X, ["a", "b"])


@pytest.mark.parametrize("cls", [PretrainedTextClassifier, PretrainedTextEmbedder])
def test_max_length_beyond_the_backbone_limit(make, cls):
    """The tiny BERT has 64 positions: longer sequences would fail deep inside its embeddings."""
    est, X, y = make(cls, max_length=100)
    X = [*X[:-1], " ".join(["good film"] * 60)]
    with pytest.raises(ValueError, match=r"max_length <= 64"):
        est.fit_transform(X) if cls in EMBEDDERS else est.fit(X, y)


def test_very_long_text_is_truncated(fitted_text):
    clf, _, _ = fitted_text
    assert clf.predict_proba([" ".join(["good film"] * 5000), "bad"]).shape == (2, 2)


def test_predict_with_the_other_modality(fitted_image, fitted_text):
    image_clf, images, _ = fitted_image
    text_clf, texts, _ = fitted_text
    with pytest.raises(ValueError, match="file not found: 'good film'"):
        image_clf.predict(texts)
    with pytest.raises(ValueError, match="Text input must be one-dimensional.*PretrainedImageClassifier"):
        text_clf.predict(images)
    with pytest.raises(TypeError, match=r"Text 0 is ndarray of shape \(32, 32, 3\), not str.*PretrainedImage"):
        text_clf.predict(list(images[:2]))


# -------------------------------------------------------------------------------------------- image files
def _image_files(tmp_path, n):
    return write_png_files(tmp_path, n, 24), ["a", "b"] * (n // 2)


def _truncated_jpeg(tmp_path):
    """A JPEG whose header is intact but whose data stops half-way: it fails only when decoded."""
    path = tmp_path / "truncated.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


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
        fitted_image[0].predict(paths)


def test_image_modes_are_converted(tmp_path, tiny_image_params):
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    files = {
        "gray16.png": Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)),
        "cmyk.jpg": rgb.convert("CMYK"),
        "rgba.png": rgb.convert("RGBA"),
        "la.png": rgb.convert("LA"),
        "palette.png": rgb.convert("P"),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    paths = [str(tmp_path / name) for name in [*files, "anim.gif"]]
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

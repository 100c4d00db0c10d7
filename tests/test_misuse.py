"""Misuse battery: bad targets, inputs, parameters, calls on fitted state and saved folders end in a clear
ValueError/TypeError that names the problem and the fix (as scikit-learn's do), never in a torch error from
deep inside and never in silently wrong results.

Complements ``test_bad_input.py`` (empty X, length mismatch, single class, missing labels, bad text entries,
bad or missing files, a few hyperparameters, unseen labels at score, long texts) and the freezing, contract
and persistence tests; nothing here repeats them. Tests that are not about one modality use the tiny text
backbone, whose fits take a fraction of a second.
"""

from __future__ import annotations

import copy
import json
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import DataConversionWarning, NotFittedError

import sktransfer
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedImageRegressor,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
)

CLASSIFIERS = [PretrainedImageClassifier, PretrainedTextClassifier]
REGRESSORS = [PretrainedImageRegressor, PretrainedTextRegressor]
EMBEDDERS = [PretrainedImageEmbedder, PretrainedTextEmbedder]
TRAINABLE = CLASSIFIERS + REGRESSORS
ALL_ESTIMATORS = TRAINABLE + EMBEDDERS
TEXT_CLASSES = (PretrainedTextClassifier, PretrainedTextRegressor, PretrainedTextEmbedder)

MULTILABEL = np.tile([[0, 1], [1, 0], [1, 1]], (8, 1))  # 24 rows, like the text data


@pytest.fixture
def make(tiny_bert_dir, image_data, text_data):
    """``make(cls, **params)`` -> (a fast ``cls``, its X, labels for a classifier or numbers for a regressor)."""

    def build(cls=PretrainedTextClassifier, **params):
        if cls in TEXT_CLASSES:
            base = {"backbone": tiny_bert_dir, "max_length": 16}
            X, labels = text_data
        else:
            base = {"backbone": "test_efficientnet", "pretrained": False}
            X, labels = image_data
        if cls not in EMBEDDERS:
            base.update(max_epochs=1, random_state=0)
        y = np.asarray(labels) if cls in CLASSIFIERS else np.arange(len(X), dtype=float)
        return cls(**{**base, **params}), X, y

    return build


def _fit(est, X, y):
    return est.fit(X) if type(est) in EMBEDDERS else est.fit(X, y)


@pytest.fixture(scope="module")
def fitted_image():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.integers(0, 80, (8, 32, 32, 3), dtype=np.uint8),
                        rng.integers(170, 255, (8, 32, 32, 3), dtype=np.uint8)])
    y = np.array(["dark"] * 8 + ["light"] * 8)
    params = {"backbone": "test_efficientnet", "pretrained": False, "max_epochs": 1, "random_state": 0}
    return PretrainedImageClassifier(**params).fit(X, y), X, y


@pytest.fixture(scope="module")
def fitted_text(tiny_bert_dir):
    X = ["good film", "great acting", "nice plot", "bad film", "awful acting", "poor plot"] * 2
    y = np.array(["pos"] * 3 + ["neg"] * 3 + ["pos"] * 3 + ["neg"] * 3)
    clf = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, max_epochs=1, random_state=0)
    return clf.fit(X, y), X, y


# ------------------------------------------------------------------------------------------------ targets
@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_classifier_rejects_continuous_targets(make, cls):
    """scikit-learn's check_classification_targets: many distinct floats are a regression target."""
    clf, X, _ = make(cls)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        clf.fit(X, np.linspace(0.0, 1.0, len(X)))


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_classifier_ravels_a_column_vector_y_with_a_warning(make, cls):
    """column_or_1d(y, warn=True), as scikit-learn's classifiers: an (n, 1) y is raveled, with a warning."""
    clf, X, y = make(cls)
    with pytest.warns(DataConversionWarning, match="ravel"):
        clf.fit(X, y[:, None])
    assert clf.classes_.tolist() == sorted(set(y.tolist()))
    assert clf.predict(X[:3]).shape == (3,)


@pytest.mark.parametrize("cls", REGRESSORS)
def test_regressor_keeps_a_column_vector_y_two_dimensional(make, cls):
    """A 2-D y of one column is one target of a multi-output regressor: predictions keep y's (n, 1) shape,
    as LinearRegression's and KNeighborsRegressor's do."""
    reg, X, y = make(cls)
    reg.fit(X, y[:, None])
    assert reg.predict(X[:3]).shape == (3, 1)


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


def test_score_with_a_label_matrix_on_a_single_label_classifier(fitted_text):
    clf, X, _ = fitted_text
    with pytest.raises(ValueError, match="1-D"):
        clf.score(X, MULTILABEL[: len(X)])


# ------------------------------------------------------------------------------------------------- inputs
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
    ],
    ids=["empty-image", "empty-array", "normalised-floats", "floats-over-255", "int-over-255", "nan"],
)
def test_image_pixel_values_are_checked(X, message):
    with pytest.raises(ValueError, match=message):
        PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit_transform(X)


def test_odd_but_valid_images_work():
    """Images of different sizes in one list, a 1x1 image and a grayscale one are resized like any other."""
    X = [np.zeros((1, 1, 3), np.uint8), np.full((40, 17, 3), 200, np.uint8), np.full((9, 60), 90, np.uint8)]
    features = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit_transform(X)
    assert features.shape[0] == 3 and np.isfinite(features).all()


def test_image_dataframe_with_several_columns(make):
    clf, X, y = make(PretrainedImageClassifier)
    with pytest.raises(ValueError, match="one column"):
        clf.fit(pd.DataFrame({"image": list(X), "other": list(X)}), y)


def test_image_dataframe_with_one_column_is_its_column(tmp_path):
    """A one-column DataFrame (what a ColumnTransformer passes for ["path"]) is read as its column, not as
    its column names (texts already are)."""
    from conftest import write_png_files

    paths = write_png_files(tmp_path, 3, 16)
    emb = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False)
    expected = emb.fit_transform(paths)
    np.testing.assert_allclose(emb.transform(pd.DataFrame({"path": paths})), expected, atol=1e-6)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_unordered_collections_are_rejected(make, cls, tmp_path):
    """A set has no order: its items would not line up with y."""
    clf, X, y = make(cls)
    if cls is PretrainedImageClassifier:
        from conftest import write_png_files

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
        (None, TypeError, "not a collection of texts"),
    ],
    ids=["nested-lists", "nan", "pd-NA", "dataframe-2-columns", "2-D-array", "ints", "none"],
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


# --------------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("cls", ALL_ESTIMATORS)
@pytest.mark.parametrize("device", ["tpu", "gpu", "", "CPU", "cuda:x", "cuda:-1", "cuda:0:1", "mps"])
def test_unknown_device_lists_the_valid_forms(make, cls, device):
    est, X, y = make(cls, device=device)
    # "mps" may be refused as unsupported or as unavailable here; the malformed ones must list the valid forms.
    with pytest.raises(ValueError, match=r"'cuda:N'|not available" if device == "mps" else r"'auto'.*'cuda:N'"):
        _fit(est, X, y)


NUMERIC_PARAMETERS = [
    ("max_epochs", 0), ("max_epochs", 1.5), ("weight_decay", -1.0), ("dropout", 1.0), ("dropout", -0.1),
    ("warmup", 1.0), ("layer_decay", 0.0), ("layer_decay", 1.5), ("head_lr", 0.0), ("unfreeze_every", 0),
    ("validation_fraction", 0.0), ("validation_fraction", 1.0), ("patience", 0), ("grad_accum_steps", 0),
    ("lr", 0.0), ("lr", "0.1"), ("lr", float("nan")), ("lr", float("inf")), ("batch_size", 2.5),
    ("batch_size", True), ("num_workers", -1), ("lora_r", 0), ("lora_alpha", 0), ("lora_dropout", 1.0),
]
CHOICE_PARAMETERS = [
    ("optimizer", "rmsprop"), ("lr_schedule", "step"), ("monitor", "valid_f1"), ("precision", "fp64"),
    ("adapter", "qlora"), ("random_state", "seed"), ("cache", "yes"), ("pretrained", "yes"), ("compile", "yes"),
    ("verbose", -1), ("backbone", 3), ("cache_dir", 3), ("head_hidden", 64),
]


@pytest.mark.parametrize("cls", TRAINABLE)
@pytest.mark.parametrize(("name", "value"), NUMERIC_PARAMETERS + CHOICE_PARAMETERS)
def test_invalid_training_parameter_is_named(make, cls, name, value):
    est, X, y = make(cls, **{name: value})
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        est.fit(X, y)


@pytest.mark.parametrize("cls", CLASSIFIERS)
@pytest.mark.parametrize(
    ("name", "value"), [("label_smoothing", 1.0), ("threshold", 0.0), ("threshold", 1.0), ("class_weight", "auto")]
)
def test_invalid_classifier_parameter_is_named(make, cls, name, value):
    clf, X, y = make(cls, **{name: value})
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        clf.fit(X, y)


@pytest.mark.parametrize("cls", EMBEDDERS)
@pytest.mark.parametrize(
    ("name", "value"),
    [("batch_size", 0), ("batch_size", True), ("num_workers", -1), ("precision", "fp64"), ("cache", "yes")],
)
def test_invalid_embedder_parameter_is_named(make, cls, name, value):
    emb, X, _ = make(cls, **{name: value})
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        emb.fit(X)


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (PretrainedTextClassifier, "pooling", "max"),
        (PretrainedTextEmbedder, "pooling", "max"),
        (PretrainedTextRegressor, "max_length", 16.0),
        (PretrainedImageClassifier, "augment", "heavy"),
        (PretrainedImageRegressor, "augment", 3),
    ],
)
def test_invalid_modality_parameter_is_named(make, cls, name, value):
    est, X, y = make(cls, **{name: value})
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        _fit(est, X, y)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (True, TypeError, "got bool True"),
        ("model.encoder.layer.0.*", ValueError, "list of glob patterns"),  # a pattern without its list
    ],
)
def test_freeze_layers_wrong_forms(make, value, error, message):
    clf, X, y = make(freeze_layers=value)
    with pytest.raises(error, match=message):
        clf.fit(X, y)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_freeze_layers_pattern_that_matches_nothing(make, cls):
    """A mistyped pattern would freeze nothing: silent full fine-tuning of what was meant to stay frozen."""
    clf, X, y = make(cls, freeze_layers=["model.*", "no_such_layer.*"])
    with pytest.raises(ValueError, match=r"\['no_such_layer\.\*'\] match no parameter"):
        clf.fit(X, y)


@pytest.mark.parametrize(
    ("n", "fraction"), [(2, 0.1), (24, 0.95), (24, 0.99)], ids=["two-samples", "one-left", "none-left"]
)
def test_early_stopping_split_that_leaves_too_little_to_train(make, n, fraction):
    clf, X, y = make(early_stopping=True, validation_fraction=fraction)
    idx = np.r_[0 : n // 2, len(X) - n // 2 : len(X)]  # both classes
    with pytest.raises(ValueError, match="validation_fraction"):
        clf.fit([X[i] for i in idx], y[idx])


@pytest.mark.parametrize("target", ["regression", "multilabel"])
def test_monitor_valid_acc_needs_single_label_classification(make, target):
    cls = PretrainedTextRegressor if target == "regression" else PretrainedTextClassifier
    est, X, y = make(cls, early_stopping=True, monitor="valid_acc")
    with pytest.raises(ValueError, match="monitor='valid_loss'"):
        est.fit(X, y if target == "regression" else MULTILABEL)


@pytest.mark.parametrize("params", [{"class_weight": "balanced"}, {"label_smoothing": 0.1}])
def test_single_label_options_with_multilabel_targets(make, params):
    """class_weight and label_smoothing have no meaning for a 0/1 indicator y: they must not be ignored."""
    clf, X, _ = make(**params)
    with pytest.raises(ValueError, match=next(iter(params))):
        clf.fit(X, MULTILABEL)


def test_class_weight_naming_an_unknown_label(make):
    clf, X, y = make(class_weight={"pos": 1.0, "neutral": 2.0})
    with pytest.raises(ValueError, match=r"class_weight names labels not in y: \['neutral'\]"):
        clf.fit(X, y)


@pytest.mark.parametrize(
    ("make_weight", "message"),
    [
        (lambda n: ["a"] * n, "sample_weight"),
        (lambda n: np.zeros(n), r"sample_weight.*zero"),
        (lambda n: -np.ones(n), r"sample_weight must be \d+ finite non-negative"),
        (lambda n: np.ones(n - 1), r"sample_weight must be \d+"),
        (lambda n: np.r_[np.ones(n - 1), np.nan], r"sample_weight must be \d+ finite"),
    ],
    ids=["strings", "all-zero", "negative", "short", "nan"],
)
def test_bad_sample_weight(make, make_weight, message):
    clf, X, y = make()
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y, sample_weight=make_weight(len(X)))


def test_batch_size_larger_than_the_data_set_is_fine(make):
    clf, X, y = make(batch_size=1000, freeze_layers="none")
    assert clf.fit(X, y).predict(X[:2]).shape == (2,)


# ---------------------------------------------------------------------------------------- fitted state
@pytest.mark.parametrize("cls", REGRESSORS + EMBEDDERS)
def test_unfitted_regressors_and_embedders_raise_not_fitted(make, cls):
    est, X, _ = make(cls)
    with pytest.raises(NotFittedError):
        (est.transform if cls in EMBEDDERS else est.predict)(X)


def test_predict_with_the_other_modality(fitted_image, fitted_text):
    image_clf, images, _ = fitted_image
    text_clf, texts, _ = fitted_text
    with pytest.raises(ValueError, match="file not found: 'good film'"):
        image_clf.predict(texts)
    with pytest.raises(ValueError, match="Text input must be one-dimensional.*PretrainedImageClassifier"):
        text_clf.predict(images)
    with pytest.raises(TypeError, match=r"Text 0 is ndarray of shape \(32, 32, 3\), not str.*PretrainedImage"):
        text_clf.predict(list(images[:2]))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform"])
def test_predict_on_empty_input(fitted_image, fitted_text, method):
    for clf, X, _ in (fitted_image, fitted_text):
        with pytest.raises(ValueError, match="X is empty"):
            getattr(clf, method)(X[:0])


def test_set_params_after_fit_does_not_change_the_fitted_model(fitted_image):
    clf, X, _ = fitted_image
    clf = copy.deepcopy(clf)
    before = clf.predict_proba(X)
    clf.set_params(backbone="no_such_backbone", freeze_layers="none", lr=5.0, device="cpu")
    np.testing.assert_allclose(clf.predict_proba(X), before, atol=1e-6)
    with pytest.raises(ValueError, match="Invalid parameter 'no_such_param'"):
        clf.set_params(no_such_param=1)


def test_warm_start_with_other_labels(make):
    clf, X, y = make()
    clf.fit(X, y)
    clf.set_params(warm_start=True)
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X, np.where(y == "pos", "good", "bad"))
    assert clf.classes_.tolist() == ["neg", "pos"]


def test_failed_warm_start_leaves_the_classifier_usable(make):
    clf, X, y = make()
    clf.fit(X, y)
    before = clf.predict(X)
    clf.set_params(warm_start=True)
    with pytest.raises(ValueError, match=r"same (classes|outputs)"):
        clf.fit(X, np.array(["a", "b", "c"] * 8))
    assert clf.classes_.tolist() == ["neg", "pos"]
    np.testing.assert_array_equal(clf.predict(X), before)


def test_failed_warm_start_leaves_the_regressor_usable(make):
    reg, X, y = make(PretrainedTextRegressor)
    reg.fit(X, y)
    before = reg.predict(X)
    reg.set_params(warm_start=True)
    with pytest.raises(ValueError, match=r"same (number of targets|outputs)"):
        reg.fit(X, np.c_[y, y])
    np.testing.assert_allclose(reg.predict(X), before, rtol=1e-6)


@pytest.mark.parametrize("first", ["single-label", "multi-label"])
def test_partial_fit_cannot_switch_between_single_and_multi_label(make, first):
    clf, X, _ = make()
    single, multi = np.array([0, 1] * 12), MULTILABEL[:, :2]
    a, b = (single, multi) if first == "single-label" else (multi, single)
    clf.partial_fit(X, a)
    with pytest.raises(ValueError, match="multi-label"):
        clf.partial_fit(X, b)


# ------------------------------------------------------------------------------------------ persistence
@pytest.fixture
def saved(fitted_text, tmp_path):
    return fitted_text[0].save(tmp_path / "model")


def _edit_config(path, edit):
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


def test_load_of_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"no_such_model.*not a directory written by save"):
        sktransfer.load(tmp_path / "no_such_model")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""], ids=["malformed", "a-list", "empty"])
def test_load_of_a_malformed_config(saved, content):
    (saved / "config.json").write_text(content)
    with pytest.raises(ValueError, match=r"config\.json"):
        sktransfer.load(saved)


@pytest.mark.parametrize("key", ["class", "params", "fitted", "versions"])
def test_load_of_a_config_with_a_missing_key(saved, key):
    _edit_config(saved, lambda config: config.pop(key))
    with pytest.raises(ValueError, match=r"config\.json"):
        sktransfer.load(saved)


@pytest.mark.parametrize(
    "name", ["sktransfer.NoSuchEstimator", "sktransfer._nowhere.Thing", "no_such_package.Model", "collections.Counter"]
)
def test_load_of_an_unknown_class(saved, name):
    _edit_config(saved, lambda config: config.update({"class": name}))
    with pytest.raises(ValueError, match=r"config\.json"):
        sktransfer.load(saved)


def test_load_never_runs_what_the_config_names(saved, tmp_path):
    """config.json is data: a class name such as subprocess.run must never be called with its 'params'."""
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    _edit_config(saved, lambda config: config.update({"class": "subprocess.run", "params": {"args": command}}))
    with pytest.raises(ValueError, match=r"config\.json"):
        sktransfer.load(saved)
    assert not marker.exists()


def test_load_of_an_unknown_parameter(saved):
    _edit_config(saved, lambda config: config["params"].update({"no_such_param": 1}))
    with pytest.raises(ValueError, match="no_such_param"):
        sktransfer.load(saved)


def test_load_of_weights_that_do_not_fit(saved, tmp_path, make):
    """Weights of a three-class model under a two-class config: a shape mismatch, named with the folder."""
    other, X, _ = make()
    other.fit(X, np.array(["a", "b", "c"] * 8)).save(tmp_path / "other")
    (saved / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"model\.safetensors|size mismatch|shape") as info:
        sktransfer.load(saved)
    assert str(saved) in str(info.value)


def test_load_of_corrupt_weights(saved):
    (saved / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"(?i)safetensor") as info:
        sktransfer.load(saved)
    assert str(saved) in str(info.value)

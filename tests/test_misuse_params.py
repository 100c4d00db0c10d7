"""Misuse battery, parameters and state: bad hyperparameters, calls on unfitted or fitted state and broken saved
folders end in a clear ValueError/TypeError (NotFittedError before fit) that names the problem and the fix,
never in a torch error from deep inside and never in silently wrong results. Targets, inputs and image files:
``test_misuse_inputs.py``.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import sktransfer
from _misuse import (
    ALL_ESTIMATORS,
    CLASSIFIERS,
    EMBEDDERS,
    MULTILABEL,
    REGRESSORS,
    TRAINABLE,
    estimator_factory,
    fit,
    fitted_image_classifier,
    fitted_text_classifier,
)
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageRegressor,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
)


@pytest.fixture
def make(tiny_bert_dir, image_data, text_data):
    return estimator_factory(tiny_bert_dir, image_data, text_data)


@pytest.fixture(scope="module")
def fitted_text(tiny_bert_dir):
    return fitted_text_classifier(tiny_bert_dir)


# --------------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("cls", ALL_ESTIMATORS)
def test_every_parameter_is_keyword_only(cls):
    with pytest.raises(TypeError, match="positional"):
        cls("resnet18", False)
    assert all(f.kw_only for f in dataclasses.fields(cls))


@pytest.mark.parametrize("cls", ALL_ESTIMATORS)
@pytest.mark.parametrize("device", ["tpu", "gpu", "", "CPU", "cuda:x", "cuda:-1", "cuda:0:1", "mps"])
def test_unknown_device_lists_the_valid_forms(make, cls, device):
    est, X, y = make(cls, device=device)
    # "mps" may be refused as unsupported or as unavailable here; the malformed ones must list the valid forms.
    with pytest.raises(ValueError, match=r"'cuda:N'|not available" if device == "mps" else r"'auto'.*'cpu'.*'cuda:N'"):
        fit(est, X, y)


def test_fp16_on_cpu_is_a_clear_error(make):
    clf, X, y = make(PretrainedImageClassifier, precision="fp16", device="cpu")
    with pytest.raises(ValueError, match="precision='fp16' needs a CUDA device"):
        clf.fit(X, y)


SHARED_PARAMETERS = [  # every estimator's
    ("batch_size", 0), ("batch_size", 2.5), ("batch_size", True), ("num_workers", -1), ("precision", "fp64"),
    ("cache", "yes"), ("pretrained", "yes"), ("backbone", 3), ("cache_dir", 3), ("verbose", -1),
]
TRAINING_PARAMETERS = [
    ("max_epochs", 0), ("max_epochs", 1.5), ("weight_decay", -1.0), ("dropout", 1.0), ("dropout", -0.1),
    ("warmup", 1.0), ("layer_decay", 0.0), ("layer_decay", 1.5), ("head_lr", 0.0), ("unfreeze_every", 0),
    ("validation_fraction", 0.0), ("validation_fraction", 1.0), ("patience", 0), ("grad_accum_steps", 0),
    ("lr", 0.0), ("lr", "0.1"), ("lr", float("nan")), ("lr", float("inf")), ("optimizer", "rmsprop"),
    ("lr_schedule", "step"), ("monitor", "valid_f1"),
    ("adapter", "qlora"), ("random_state", "seed"), ("compile", "yes"), ("head_hidden", 64),
]
CLASSIFIER_PARAMETERS = [("label_smoothing", 1.0), ("threshold", 0.0), ("threshold", 1.0), ("class_weight", "auto")]
INVALID_PARAMETERS = [
    *[(cls, name, value) for cls in ALL_ESTIMATORS for name, value in SHARED_PARAMETERS],
    *[(cls, name, value) for cls in TRAINABLE for name, value in TRAINING_PARAMETERS],
    *[(cls, name, value) for cls in CLASSIFIERS for name, value in CLASSIFIER_PARAMETERS],
    (PretrainedTextClassifier, "pooling", "max"),
    (PretrainedTextEmbedder, "pooling", "max"),
    (PretrainedTextClassifier, "max_length", 0),
    (PretrainedTextRegressor, "max_length", 16.0),
    (PretrainedImageClassifier, "augment", "heavy"),
    (PretrainedImageRegressor, "augment", 3),
]


@pytest.mark.parametrize(("cls", "name", "value"), INVALID_PARAMETERS,
                         ids=[f"{cls.__name__}-{name}={value!r}" for cls, name, value in INVALID_PARAMETERS])
def test_invalid_parameter_is_named(make, cls, name, value):
    est, X, y = make(cls, **{name: value})
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        fit(est, X, y)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (True, TypeError, "got bool True"),
        ("model.encoder.layer.0.*", ValueError, "list of glob patterns"),  # a pattern without its list
        ("some", ValueError, "freeze_layers"),
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


# ------------------------------------------------------------------------------------------- fitted state
UNFITTED_CALLS = [
    *[(cls, method) for cls in CLASSIFIERS for method in ("predict", "predict_proba", "score", "transform")],
    *[(cls, method) for cls in REGRESSORS for method in ("predict", "score", "transform")],
    *[(cls, "transform") for cls in EMBEDDERS],
]


@pytest.mark.parametrize(("cls", "method"), UNFITTED_CALLS,
                         ids=[f"{cls.__name__}.{method}" for cls, method in UNFITTED_CALLS])
def test_unfitted_estimator_raises_not_fitted(make, cls, method):
    est, X, y = make(cls)
    with pytest.raises(NotFittedError):
        getattr(est, method)(*((X, y) if method == "score" else (X,)))


def test_set_params_after_fit_does_not_change_the_fitted_model():
    clf, X, _ = fitted_image_classifier()
    before = clf.predict_proba(X)
    clf.set_params(backbone="no_such_backbone", freeze_layers="none", lr=5.0, device="cpu")
    np.testing.assert_allclose(clf.predict_proba(X), before, atol=1e-6)
    with pytest.raises(ValueError, match="Invalid parameter 'no_such_param'"):
        clf.set_params(no_such_param=1)


@pytest.mark.parametrize(("labels", "message"), [(["good", "bad"], "same classes"),
                                                 (["a", "b", "c"], r"same (classes|outputs)")],
                         ids=["other-names", "three-classes"])
def test_failed_warm_start_leaves_the_classifier_usable(make, labels, message):
    clf, X, y = make()
    clf.fit(X, y)
    before = clf.predict(X)
    clf.set_params(warm_start=True)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, np.resize(labels, len(X)))
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


# ------------------------------------------------------------------------------------------- saved folders
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

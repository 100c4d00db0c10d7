"""The fit plan, keyword-only parameters, per-class constraints, transform on trained estimators."""

from __future__ import annotations

import dataclasses
import warnings
from numbers import Real

import numpy as np
import pytest
import torch
from sklearn.exceptions import DataConversionWarning

from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedImageRegressor,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
)
from sktransfer._plan import Stage
from sktransfer._validation import Interval

ESTIMATORS = [PretrainedImageClassifier, PretrainedImageRegressor, PretrainedImageEmbedder,
              PretrainedTextClassifier, PretrainedTextRegressor, PretrainedTextEmbedder]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_parameter_is_keyword_only(cls):
    with pytest.raises(TypeError, match="positional"):
        cls("resnet18", False)
    assert all(f.kw_only for f in dataclasses.fields(cls))


def test_a_subclass_adds_a_parameter_and_its_constraint(image_data, tiny_image_params):
    @dataclasses.dataclass(repr=False, eq=False, kw_only=True)
    class WithTemperature(PretrainedImageClassifier):
        temperature: float = 1.0

    X, y = image_data
    assert WithTemperature(**tiny_image_params, temperature=2.0).fit(X, y).get_params()["temperature"] == 2.0

    @dataclasses.dataclass(repr=False, eq=False, kw_only=True)
    class Checked(WithTemperature):
        _parameter_constraints = {"temperature": [Interval(Real, 0, None, closed="neither")]}

    with pytest.raises(ValueError, match="temperature"):
        Checked(**tiny_image_params, temperature=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="batch_size"):  # the inherited constraints still apply
        Checked(**{**tiny_image_params, "batch_size": 0}).fit(X, y)


@pytest.mark.parametrize("freeze_layers, augment, stage", [
    ("all", None, Stage.EMBEDDINGS),
    ("all", "light", Stage.RAW),
    (-1, None, Stage.FROZEN_PREFIX),
    ("none", None, Stage.RAW),
])
def test_the_plan_decides_what_is_precomputed_once(image_data, tiny_image_params, freeze_layers, augment, stage,
                                                    monkeypatch):
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers=freeze_layers, augment=augment)
    plans = []
    plan_fit = clf._plan_fit
    monkeypatch.setattr(clf, "_plan_fit", lambda *a, **k: plans.append(plan_fit(*a, **k)) or plans[-1])
    clf.fit(*image_data)
    (plan,) = plans
    assert plan.stage is stage
    assert clf.features_cached_ == (stage is Stage.EMBEDDINGS) and clf.prefix_cached_ == (stage is Stage.FROZEN_PREFIX)
    assert (plan.collate is None) == stage.precomputed or clf._collate_fn() is None
    assert clf.backbone_tuned_ == (freeze_layers != "all")
    assert ":tuned:" not in clf.backbone_identity_


def test_a_warm_start_after_fine_tuning_never_reads_pretrained_embeddings(image_data, tiny_image_params):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", lr=0.05).fit(X, y)
    clf.set_params(warm_start=True, freeze_layers="all").fit(X, y)
    assert clf.backbone_tuned_ and not clf.features_cached_
    pristine = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit(X)
    pristine.encoder_.load_state_dict(clf.net_.module_.encoder.state_dict())
    np.testing.assert_allclose(clf.transform(X), pristine.transform(X), atol=1e-5)


@pytest.mark.parametrize("freeze_layers", ["all", "none"])
def test_transform_gives_the_fitted_backbones_embeddings(image_data, tiny_image_params, freeze_layers):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers=freeze_layers, lr=0.05).fit(X, y)
    embedded = clf.transform(X)
    assert embedded.shape == (len(X), clf.n_features_out_)
    with torch.inference_mode():
        batch = torch.stack([clf._make_dataset(list(X))[i][0]["pixel_values"] for i in range(len(X))])
        expected = clf.net_.module_.encoder(pixel_values=batch).numpy()
    np.testing.assert_allclose(embedded, expected, rtol=1e-4, atol=1e-5)  # BatchNorm folded: float32 rounding
    frozen = PretrainedImageClassifier(**tiny_image_params).fit(X, y)  # same seed: same initial backbone
    assert np.allclose(embedded, frozen.transform(X), atol=1e-5) == (freeze_layers == "all")


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", "", "CPU"])
def test_unknown_device_strings_name_the_valid_forms(image_data, tiny_image_params, device):
    with pytest.raises(ValueError, match=r"'auto'.*'cpu'.*'cuda:N'"):
        PretrainedImageClassifier(**{**tiny_image_params, "device": device}).fit(*image_data)


def test_classifiers_reject_continuous_targets_as_scikit_learn_does(image_data, tiny_image_params):
    X, _ = image_data
    y = np.linspace(0.1, 3.3, len(X))
    with pytest.raises(ValueError, match="Unknown label type: continuous.*regressor"):
        PretrainedImageClassifier(**tiny_image_params).fit(X, y)
    PretrainedImageRegressor(**tiny_image_params).fit(X, y)  # the same y is fine for a regressor


def test_a_column_of_labels_is_ravelled_with_a_warning(image_data, tiny_image_params):
    X, y = image_data
    with pytest.warns(DataConversionWarning):
        clf = PretrainedImageClassifier(**tiny_image_params).fit(X, y.reshape(-1, 1))
    assert clf.predict(X).shape == (len(X),)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        PretrainedImageClassifier(**tiny_image_params).fit(X, y)
    assert 0 <= clf.score(X, y.reshape(-1, 1)) <= 1


def test_evaluating_restores_each_modules_training_mode_even_after_an_error():
    from sktransfer._modes import evaluating

    owner = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Dropout())
    view = torch.nn.Sequential(owner[1])
    owner.train()
    view.eval()  # the view's own flag; its shared Dropout follows the owner
    with pytest.raises(RuntimeError, match="inside"):
        with evaluating(view, owner):
            assert not any(m.training for m in (*owner.modules(), view))
            raise RuntimeError("inside")
    assert owner.training and owner[1].training and not view.training

"""The fit plan, per-class constraints, transform on trained estimators, training modes restored, and where
scikit-learn's private helpers come from."""

from __future__ import annotations

import ast
import dataclasses
from numbers import Real
from pathlib import Path

import numpy as np
import pytest
import torch

import sktransfer
from sktransfer import PretrainedImageClassifier, PretrainedImageEmbedder
from sktransfer._plan import Stage
from sktransfer._validation import Interval


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


def _private_sklearn_imports(source: str) -> list[str]:
    """The scikit-learn names that ``source`` imports from a private module, or private names it imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sklearn":
            private_module = any(part.startswith("_") for part in node.module.split("."))
            found += [f"{node.module}.{a.name}" for a in node.names if private_module or a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("sklearn.") and "._" in a.name]
    return found


def test_only_the_compat_module_imports_private_sklearn_names():
    """scikit-learn may move a private name in any release: then only ``_sklearn_compat`` needs an edit."""
    found = {path.name: _private_sklearn_imports(path.read_text())
             for path in Path(sktransfer.__file__).parent.rglob("*.py")}
    assert found.pop("_sklearn_compat.py")  # the check sees the imports that are there
    assert {name: names for name, names in found.items() if names} == {}

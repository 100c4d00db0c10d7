"""freeze_layers: the same meaning for a timm model, a torchvision-style module and a transformers model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier

FAMILIES = ["timm", "torchvision", "transformers"]
GLOBS = {"timm": "model.conv_stem.*", "torchvision": "model.features.1.*", "transformers": "model.embeddings.*"}


def _torchvision_body() -> nn.Module:
    import torchvision

    model = torchvision.models.mobilenet_v3_small()
    model.classifier = nn.Identity()
    return model


@pytest.fixture(params=FAMILIES)
def family(request, image_data, text_data, tiny_bert_dir):
    """(family, estimator factory, X, y): one epoch, no feature cache, so the encoder runs in training."""
    common = {"max_epochs": 1, "random_state": 0, "cache": False, "batch_size": 4}
    if request.param == "transformers":
        X, y = text_data
        return request.param, lambda **kw: PretrainedTextClassifier(
            backbone=tiny_bert_dir, max_length=16, **common, **kw), X[:8], y[:8]
    X, y = image_data
    idx = [0, 1, -2, -1]
    if request.param == "timm":
        backbone = "test_efficientnet"
    else:
        backbone = _torchvision_body()
    return request.param, lambda **kw: PretrainedImageClassifier(
        backbone=backbone, pretrained=False, **common, **kw), X[idx], y[idx]


def _frozen(clf) -> set[str]:
    return {n for n, p in clf.net_.module_.encoder.named_parameters() if not p.requires_grad}


def _all_names(clf) -> set[str]:
    return {n for n, _ in clf.net_.module_.encoder.named_parameters()}


def _batchnorms(clf) -> dict[str, nn.Module]:
    return {n: m for n, m in clf.net_.module_.encoder.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def test_all_freezes_backbone_and_keeps_batchnorm_in_eval(family):
    name, make, X, y = family
    clf = make(freeze_layers="all").fit(X, y)
    assert clf.n_backbone_blocks_ == len(clf.blocks_) > 1
    trainable = [n for n, p in clf.net_.module_.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)
    assert clf.n_trainable_backbone_params_ == 0
    for bn in _batchnorms(clf).values():
        assert int(bn.num_batches_tracked) == 0
        assert float(bn.running_mean.abs().sum()) == 0.0 and bool((bn.running_var == 1).all())
    assert (name == "transformers") or _batchnorms(clf)


@pytest.mark.parametrize("freeze_layers", ["none", 0])
def test_none_trains_everything(family, freeze_layers):
    _, make, X, y = family
    clf = make(freeze_layers=freeze_layers).fit(X, y)
    assert _frozen(clf) == set()
    assert clf.n_trainable_backbone_params_ == sum(p.numel() for p in clf.net_.module_.encoder.parameters())
    # By default BatchNorm keeps its running statistics; with freeze_bn_stats=False trainable layers update them.
    assert all(int(bn.num_batches_tracked) == 0 for bn in _batchnorms(clf).values())
    updating = make(freeze_layers=freeze_layers, freeze_bn_stats=False).fit(X, y)
    assert all(int(bn.num_batches_tracked) > 0 for bn in _batchnorms(updating).values())


def test_frozen_bn_stats_still_train_the_batchnorm_weights(family):
    name, make, X, y = family
    if name == "transformers":
        pytest.skip("no BatchNorm in transformers")
    clf = make(freeze_layers="none", lr=0.1)
    clf.fit(X, y)
    fresh = make(freeze_layers="none", lr=1e-30).fit(X, y)  # the initial weights, as good as untouched
    trained, untrained = _batchnorms(clf), _batchnorms(fresh)
    assert any(not torch.equal(trained[n].weight, untrained[n].weight) for n in trained)
    assert all(torch.equal(trained[n].running_mean, untrained[n].running_mean) for n in trained)


def test_positive_k_freezes_exactly_the_first_k_blocks(family):
    _, make, X, y = family
    clf = make(freeze_layers=2, freeze_bn_stats=False).fit(X, y)
    expected = {n for block in clf.blocks_[:2] for n in block}
    assert _frozen(clf) == expected
    frozen_modules = {n.rsplit(".", 1)[0] for n in expected}
    for module_name, bn in _batchnorms(clf).items():
        assert (int(bn.num_batches_tracked) == 0) == (module_name in frozen_modules)


def test_negative_k_freezes_all_but_the_last_k_blocks(family):
    _, make, X, y = family
    clf = make(freeze_layers=-1).fit(X, y)
    assert _frozen(clf) == {n for block in clf.blocks_[:-1] for n in block}
    assert _all_names(clf) - _frozen(clf) == set(clf.blocks_[-1])


def test_glob_patterns_freeze_matching_parameters(family):
    name, make, X, y = family
    pattern = GLOBS[name]
    clf = make(freeze_layers=[pattern]).fit(X, y)
    prefix = pattern.rstrip("*")
    expected = {n for n in _all_names(clf) if n.startswith(prefix)}
    assert expected and _frozen(clf) == expected


def test_blocks_cover_every_parameter_once(family):
    _, make, X, y = family
    clf = make(freeze_layers="all").fit(X, y)
    listed = [n for block in clf.blocks_ for n in block]
    assert len(listed) == len(set(listed))
    assert set(listed) == _all_names(clf)


@pytest.mark.parametrize("estimator_class", [PretrainedImageClassifier, PretrainedTextClassifier])
@pytest.mark.parametrize(
    ("value", "error"), [("some", ValueError), (99, ValueError), (1.5, TypeError), ([1], TypeError)]
)
def test_invalid_freeze_layers_lists_the_valid_forms(estimator_class, value, error, tiny_bert_dir):
    if estimator_class is PretrainedImageClassifier:
        clf = estimator_class(backbone="test_efficientnet", pretrained=False, freeze_layers=value)
        X = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    else:
        clf = estimator_class(backbone=tiny_bert_dir, max_length=16, freeze_layers=value)
        X = ["good", "bad"]
    with pytest.raises(error) as info:
        clf.fit(X, ["a", "b"])
    message = str(info.value)
    for form in ("'all'", "'none'", "an int k", "glob patterns"):
        assert form in message
    assert repr(value) in message or f"freeze_layers={value}" in message

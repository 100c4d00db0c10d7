"""BatchNorm folded into convolutions for inference: same outputs, no BatchNorm pass, originals untouched."""

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from sktransfer import PretrainedImageClassifier, PretrainedImageEmbedder
from sktransfer._bn_folding import _foldable, folded_for_inference


def _with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine weights, so that a fold that is wrong shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model.eval()


class _Pixels(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values)


def _count_norms(module: nn.Module) -> int:
    return sum(_foldable(m) for m in module.modules())


@pytest.mark.parametrize("build", [
    lambda: timm.create_model("test_efficientnet", pretrained=False, num_classes=0),
    lambda: torchvision.models.resnet18(num_classes=3),
], ids=["timm", "torchvision"])
def test_folding_keeps_the_outputs_and_removes_the_batchnorm_passes(build):
    model = _Pixels(_with_random_statistics(build())).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 3, 48, 48)
    folded = folded_for_inference(model, {"pixel_values": x[:1]})
    assert folded is not model and _count_norms(model) > 0 and _count_norms(folded) == 0
    with torch.inference_mode():
        expected, got = model(pixel_values=x), folded(pixel_values=x)
    assert torch.linalg.vector_norm(got - expected) / torch.linalg.vector_norm(expected) < 1e-5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched


class _ConvOutputUsedTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, pixel_values):
        y = self.conv(pixel_values)
        return self.norm(y) + y  # folding the norm into the conv would change the second term


def test_a_fold_that_would_change_the_outputs_is_refused():
    model = _with_random_statistics(_ConvOutputUsedTwice())
    assert folded_for_inference(model, {"pixel_values": torch.rand(1, 3, 8, 8)}) is model
    after_activation = _with_random_statistics(nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU(), nn.BatchNorm2d(3)))
    assert folded_for_inference(after_activation, {"input": torch.rand(1, 3, 8, 8)}) is after_activation


def test_the_fold_is_kept_until_the_weights_change_and_never_used_in_training():
    model = _Pixels(_with_random_statistics(timm.create_model("test_efficientnet", num_classes=0))).eval()
    example = {"pixel_values": torch.rand(1, 3, 32, 32)}
    folded = folded_for_inference(model, example)
    assert folded_for_inference(model, example) is folded
    with torch.no_grad():
        next(model.parameters()).mul_(2.0)  # as an optimiser step does: in place
    refolded = folded_for_inference(model, example)
    assert refolded is not folded
    with torch.inference_mode():
        expected = model(**example)
    assert torch.allclose(refolded(**example), expected, atol=1e-5, rtol=1e-4)
    assert folded_for_inference(model.train(), example) is model


def _norm_calls(encoder: nn.Module) -> list:
    calls = []
    for m in encoder.modules():
        if _foldable(m):
            m.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_embedder_transform_runs_the_folded_copy_with_the_same_embeddings(image_data, tiny_image_params):
    X, _ = image_data
    params = {k: v for k, v in tiny_image_params.items() if k in ("backbone", "pretrained")}
    embedder = PretrainedImageEmbedder(**params, cache=False, batch_size=4).fit(X)
    _with_random_statistics(embedder.encoder_)
    calls = _norm_calls(embedder.encoder_)
    n_norms = _count_norms(embedder.encoder_)
    first = embedder.transform(X)
    assert len(calls) == n_norms  # the one-image check of the fold, then no BatchNorm pass for 4 batches
    assert len(embedder.transform(X)) == len(X) and len(calls) == n_norms  # the fold is kept
    with torch.inference_mode():
        pixels = torch.stack([embedder._make_dataset(list(X))[i][0]["pixel_values"] for i in range(len(X))])
        expected = embedder.encoder_.eval()(pixel_values=pixels).numpy()
    np.testing.assert_allclose(first, expected, rtol=1e-4, atol=1e-5)


def test_a_fine_tuned_classifier_predicts_through_the_folded_copy(image_data, tiny_image_params):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", cache=False, batch_size=4).fit(X, y)
    encoder = clf.net_.module_.encoder
    expected = clf.predict_proba(X)
    calls = _norm_calls(encoder)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    assert calls == []  # folded during the first predict_proba; kept since
    clf.net_.module_.train()
    clf.net_.module_(pixel_values=torch.rand(2, 3, 32, 32))
    assert len(calls) == _count_norms(encoder)  # training runs the module itself

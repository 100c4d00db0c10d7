"""Explanations: shapes, planted features found, the model left unchanged, targets, bad inputs, Pipeline, pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sktransfer import (
    Explanation,
    PretrainedImageClassifier,
    PretrainedImageRegressor,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    explain,
    feature_cache,
)

pytest.importorskip("captum")
pytestmark = pytest.mark.filterwarnings("ignore:.*has no effect")  # max_epochs of the frozen fits

FILLER = "the a film movie plot acting story is was it this that".split()
PATCH = (slice(3, 13), slice(3, 13))


def _patch_images(n: int, seed: int = 0):
    """Dark noise; the class "patch" has a bright square near the top-left corner."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 60, size=(n, 32, 32, 3), dtype=np.uint8)
    y = np.array(["patch", "plain"] * (n // 2))
    X[y == "patch", PATCH[0], PATCH[1]] = 255
    return X, y


def _word_texts(n: int, seed: int = 0):
    """Five filler words and, at a random place, the label word: "good" or "bad"."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        words, label = list(rng.choice(FILLER, 5)), ("good", "bad")[i % 2]
        words.insert(int(rng.integers(0, 6)), label)
        X.append(" ".join(words))
        y.append(label)
    return X, y


@pytest.fixture(scope="module")
def patch_model():
    X, y = _patch_images(24)
    return PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def word_model(tiny_bert_dir):
    X, y = _word_texts(40)
    return PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, random_state=0).fit(X, y)


def _snapshot(module: torch.nn.Module) -> tuple:
    return ({k: v.detach().clone() for k, v in module.state_dict().items()},
            [m.training for m in module.modules()], [p.requires_grad for p in module.parameters()],
            [p.grad is None for p in module.parameters()])


def _assert_unchanged(module, before) -> None:
    state, modes, flags, grads = _snapshot(module)
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert (modes, flags, grads) == before[1:]


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_image_maps_have_each_images_resolution_and_peak_at_the_planted_patch(patch_model, method):
    X, _ = _patch_images(4, seed=1)
    before, cached = _snapshot(patch_model.net_.module_), len(feature_cache)
    found = patch_model.explain(list(X[:1]) + [X[2, :, :28]], target="patch", method=method)
    _assert_unchanged(patch_model.net_.module_, before)
    assert len(feature_cache) == cached  # nothing embedded through the cache
    assert isinstance(found, Explanation) and found.method == method and found.targets == ["patch", "patch"]
    assert [a.shape for a in found.attributions] == [(32, 32), (32, 28)]
    for attribution in found.attributions:
        inside = attribution[PATCH].mean()
        assert inside > 2 * abs(attribution.mean())
    assert 0.5 < found.outputs[0] <= 1


def test_grad_cam_is_the_default_of_a_cnn_and_integrated_gradients_of_a_vit():
    X, y = _patch_images(8)
    vit = PretrainedImageClassifier(backbone="test_vit", pretrained=False, random_state=0).fit(X, y)
    assert vit.explain(X[:1]).method == "integrated_gradients"
    with pytest.raises(ValueError, match="method='gradcam' needs a convolutional backbone"):
        vit.explain(X[:1], method="gradcam")
    cut = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, keep_blocks=2,
                                    random_state=0).fit(X, y)
    found = cut.explain(X[:2])
    assert found.method == "gradcam" and found.attributions[1].shape == (32, 32)


@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_text_scores_one_per_word_and_peak_at_the_label_word(word_model, method):
    X, y = _word_texts(6, seed=1)
    X[0] = "  " + X[0].replace(" ", "   ", 1) + " ."  # words are whitespace-separated, whatever the spacing
    found = word_model.explain(X, method=method)
    assert found.method == method and found.targets == y
    assert found.words == [text.split() for text in X]
    for words, scores, label in zip(found.words, found.attributions, y):
        assert scores.shape == (len(words),)
        assert words[int(np.argmax(scores))] == label


def test_a_fine_tuned_lora_model_is_left_unchanged(tiny_text_params):
    pytest.importorskip("peft")
    X, y = _word_texts(24)
    clf = PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 1}, adapter="lora").fit(X, y)
    clf.net_.module_.train()  # a mode explain must restore
    module = clf.net_.module_
    before = _snapshot(module)
    assert any(before[2])  # the adapters train
    for method in ("occlusion", "integrated_gradients"):
        assert len(clf.explain(X[:3], method=method)) == 3
    _assert_unchanged(module, before)
    assert clf.net_.module_ is module


def test_targets_of_multi_label_multi_output_and_regressors(tiny_text_params):
    X, y = _word_texts(16)
    labels = np.column_stack([[t == "good" for t in y], ["film" in t for t in X]]).astype(int)
    multilabel = PretrainedTextClassifier(**tiny_text_params).fit(X, labels)
    assert multilabel.explain(X[:2], target=1).targets == [1, 1]
    multioutput = PretrainedTextClassifier(**tiny_text_params).fit(X, np.column_stack([y, y[::-1]]))
    found = multioutput.explain(X[:2], target=1)
    assert [name for name, _ in found.targets] == [multioutput.output_names_[1]] * 2
    assert {label for _, label in found.targets} <= {"good", "bad"}
    with pytest.raises(ValueError, match="not an output of this model: pass an index from 0 to 1"):
        multioutput.explain(X[:1], target=2)
    images, _ = _patch_images(8)
    regressor = PretrainedImageRegressor(backbone="test_efficientnet", pretrained=False, random_state=0).fit(
        images, np.column_stack([images.mean((1, 2, 3)), images[:, :16].mean((1, 2, 3))]))
    found = regressor.explain(images[:2], target=1)
    assert found.targets == [1, 1]
    np.testing.assert_allclose(found.outputs, regressor.predict(images[:2])[:, 1], rtol=1e-4)
    with pytest.raises(ValueError, match="not an output index of this model"):
        regressor.explain(images[:1], target=5)


def test_bad_inputs_name_the_problem(word_model, patch_model, tiny_bert_dir):
    with pytest.raises(NotFittedError):
        PretrainedTextClassifier(backbone=tiny_bert_dir).explain(["good film"])
    with pytest.raises(ValueError, match=r"target='great' is not in classes_: choose one of \['bad', 'good'\]"):
        word_model.explain(["good film"], target="great")
    embedder = PretrainedTextEmbedder(backbone=tiny_bert_dir, max_length=16).fit(["good film"])
    with pytest.raises(TypeError, match="PretrainedTextEmbedder has no prediction to explain"):
        explain(embedder, ["good film"])
    with pytest.raises(TypeError, match="explain needs a fitted sktransfer classifier or regressor"):
        explain(FunctionTransformer(), ["good film"])
    with pytest.raises(TypeError, match="For images, use PretrainedImageClassifier"):
        word_model.explain(list(_patch_images(2)[0]))
    with pytest.raises(ValueError, match="explains images, but X holds texts"):
        patch_model.explain(["good film"])
    with pytest.raises(ValueError, match=r"method='gradcam' does not explain texts; choose one of"):
        word_model.explain(["good film"], method="gradcam")


def test_a_pipeline_is_explained_through_its_last_step(tiny_text_params):
    X, y = _word_texts(16)
    pipe = make_pipeline(FunctionTransformer(lambda texts: [t.upper() for t in texts]),
                         PretrainedTextClassifier(**tiny_text_params)).fit(X, y)
    found = explain(pipe, X[:2])
    assert found.words == [t.upper().split() for t in X[:2]]
    direct = pipe[-1].explain([t.upper() for t in X[:2]])
    np.testing.assert_allclose(np.concatenate(found.attributions), np.concatenate(direct.attributions), rtol=1e-5)


def test_plot_and_html(word_model, patch_model):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = patch_model.explain(_patch_images(2)[0])
    texts = word_model.explain(["good film <b>", "it was bad"])
    for found, kind, count in ((images, "<img", 2), (texts, "<span", 6)):
        figure = found.plot()
        assert len(figure.axes) >= 2
        plt.close(figure)
        assert found._repr_html_().count(kind) == count
    assert "&lt;b&gt;" in texts._repr_html_()


def test_a_torchvision_backbone_gets_grad_cam_maps():
    X, y = _patch_images(8)
    clf = PretrainedImageClassifier(backbone="mobilenet_v3_small", pretrained=False, random_state=0).fit(X, y)
    before = _snapshot(clf.net_.module_)
    found = clf.explain(X[:2])
    _assert_unchanged(clf.net_.module_, before)
    assert found.method == "gradcam" and [a.shape for a in found.attributions] == [(32, 32), (32, 32)]
    assert all(np.isfinite(a).all() and a.any() for a in found.attributions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_explanations_run_on_the_models_cuda_device(tiny_bert_dir):
    X, y = _patch_images(8)
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, device="cuda",
                                    random_state=0).fit(X, y)
    assert clf.explain(X[:2]).attributions[0].shape == (32, 32)
    texts, labels = _word_texts(8)
    text_clf = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, device="cuda", random_state=0)\
        .fit(texts, labels)
    assert [len(s) for s in text_clf.explain(texts[:2]).attributions] == [len(t.split()) for t in texts[:2]]

"""Multi-task classification: several label columns, one shared backbone, one head per column."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.model_selection import KFold, cross_val_score
from sklearn.utils.class_weight import compute_class_weight

import sktransfer
from conftest import force_raw_stage
from sktransfer import LoRA, PretrainedImageClassifier, PretrainedImageRegressor, PretrainedTextClassifier
from sktransfer._multitask import MultiOutputLoss

TOPIC = ["cinema", "acting", "story", "cinema", "story", "other"]  # of text_data's six phrases, pos and neg alike


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    """24 images with two independent outputs: brightness (2 classes) and dominant channel (3 classes)."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 60, size=(24, 32, 32, 3), dtype=np.uint8)
    light = np.arange(24) % 2 == 1
    channel = np.arange(24) // 2 % 3
    X[light] += 100
    X[np.arange(24), :, :, channel] += 90
    Y = np.column_stack([np.where(light, "light", "dark"), np.array(["red", "green", "blue"])[channel]])
    return X, Y


@pytest.fixture
def texts(text_data) -> tuple[list[str], pd.DataFrame]:
    X, y = text_data
    return X, pd.DataFrame({"sentiment": y, "topic": TOPIC * 4})


@pytest.fixture(scope="module")
def image_clf(images):
    X, Y = images
    return PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0).fit(X, Y)


def _accuracy(clf, X, Y) -> list[float]:
    pred = clf.predict(X)
    return [float(np.mean(pred[:, k] == np.asarray(Y)[:, k])) for k in range(pred.shape[1])]


def test_each_head_learns_its_own_column(image_clf, images):
    X, Y = images
    assert image_clf.multioutput_ and not image_clf.multilabel_
    assert [c.tolist() for c in image_clf.classes_] == [["dark", "light"], ["blue", "green", "red"]]
    assert image_clf.n_outputs_ == 5 and image_clf.C_ is not None
    pred = image_clf.predict(X)
    assert pred.shape == (24, 2)
    assert min(_accuracy(image_clf, X, Y)) == 1.0
    # Swapped columns swap the heads: each head learns the column it is given, not a shared label.
    swapped = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0)
    swapped.fit(X, Y[:, ::-1])
    np.testing.assert_array_equal(swapped.predict(X), pred[:, ::-1])


def test_predict_proba_classes_and_score_follow_multioutputclassifier(image_clf, images):
    X, Y = images
    proba = image_clf.predict_proba(X)
    assert isinstance(proba, list) and [p.shape for p in proba] == [(24, 2), (24, 3)]
    for p, labels, column in zip(proba, image_clf.classes_, image_clf.predict(X).T):
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_array_equal(labels[p.argmax(axis=1)], column)
    wrong = Y.copy()
    wrong[:6, 1] = "nope"
    assert image_clf.score(X, Y) == 1.0
    assert image_clf.score(X, wrong) == pytest.approx(18 / 24)
    assert image_clf.score(X, wrong, sample_weight=np.r_[np.zeros(6), np.ones(18)]) == 1.0
    with pytest.raises(ValueError, match="predicts 2 outputs"):
        image_clf.score(X, Y[:, 0])


@pytest.mark.parametrize(("make_y", "multilabel", "multioutput"), [
    (lambda n: np.column_stack([np.arange(n) % 2, np.arange(n) // 2 % 2]), True, False),
    (lambda n: np.column_stack([np.arange(n) % 2, np.arange(n) // 2 % 2]).astype(str), False, True),
    (lambda n: np.column_stack([np.arange(n) % 3, np.arange(n) // 2 % 2]), False, True),
    (lambda n: np.column_stack([np.arange(n) % 2 == 1, np.arange(n) // 2 % 2 == 1]), True, False),
], ids=["int-0-1", "str-0-1", "int-0-1-2", "bool"])
def test_how_a_two_dimensional_y_is_read(images, make_y, multilabel, multioutput):
    X, _ = images
    y = make_y(len(X))
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0).fit(X, y)
    assert (clf.multilabel_, clf.multioutput_) == (multilabel, multioutput)
    assert isinstance(clf.predict_proba(X[:2]), list) == multioutput
    assert clf.predict(X[:2]).shape == (2, 2)


def test_a_dataframe_keeps_its_column_names_and_mixed_label_types(images):
    X, Y = images
    frame = pd.DataFrame({"shade": Y[:, 0], "code": np.arange(len(X)) // 2 % 3})
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0).fit(X, frame)
    assert clf.output_names_.tolist() == ["shade", "code"]
    assert clf.classes_[1].tolist() == [0, 1, 2]
    assert clf.predict(X).dtype == object
    assert clf.score(X, frame) == 1.0


def test_text_mini_batch_training_with_early_stopping_monitors_the_summed_loss(tiny_text_params, texts):
    X, Y = texts
    clf = PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 3}, C=None, early_stopping=True,
                                   validation_fraction=0.25, lr=1e-2).fit(X, Y)
    assert clf.C_ is None and clf.output_names_.tolist() == ["sentiment", "topic"]
    assert all("valid_loss" in row for row in clf.history_)
    # The summed loss starts near the sum of the uniform cross-entropies, log 2 + log 4.
    assert clf.history_[0]["train_loss"] == pytest.approx(np.log(2) + np.log(4), rel=0.3)
    assert [p.shape[1] for p in clf.predict_proba(X)] == [2, 4]
    with pytest.raises(ValueError, match="multi-output"):
        PretrainedTextClassifier(**tiny_text_params, early_stopping=True, monitor="valid_acc").fit(X, Y)


def test_the_loss_is_the_weighted_sum_of_the_outputs_cross_entropies():
    torch.manual_seed(0)
    logits, target = torch.randn(5, 5), torch.stack([torch.randint(0, 2, (5,)), torch.randint(0, 3, (5,))], 1)
    class_weight = np.array([1.0, 3.0, 1.0, 0.5, 2.0], dtype=np.float32)
    loss = MultiOutputLoss([2, 3], np.array([0.5, 2.0], dtype=np.float32), class_weight)(logits, target)
    expected = (0.5 * F.cross_entropy(logits[:, :2], target[:, 0], weight=torch.tensor(class_weight[:2]),
                                      reduction="none")
                + 2.0 * F.cross_entropy(logits[:, 2:], target[:, 1], weight=torch.tensor(class_weight[2:]),
                                        reduction="none"))
    torch.testing.assert_close(loss, expected)
    smoothed = MultiOutputLoss([2, 3], label_smoothing=0.1)(logits, target)
    torch.testing.assert_close(smoothed, F.cross_entropy(logits[:, :2], target[:, 0], reduction="none",
                                                         label_smoothing=0.1)
                               + F.cross_entropy(logits[:, 2:], target[:, 1], reduction="none", label_smoothing=0.1))


@pytest.mark.parametrize("options", [{"C": "auto"}, {"C": None, "optimizer": "sgd", "lr": 0.1}],
                         ids=["solved", "sgd"])
def test_output_weights_weigh_each_output(images, options):
    X, Y = images
    params = {"backbone": "test_efficientnet", "pretrained": False, "random_state": 0, "max_epochs": 3, **options}
    even = PretrainedImageClassifier(**params).fit(X, Y)
    light = PretrainedImageClassifier(**params, output_weights=[1.0, 1e-4]).fit(X, Y)
    # A weight near 0 leaves the second output near its starting point (uniform, or the penalty's zero head).
    confidence = [clf.predict_proba(X)[1].max(axis=1).mean() for clf in (even, light)]
    assert confidence[1] < min(confidence[0] - 0.2, 0.5)


def test_balanced_class_weight_is_per_output(images):
    X, Y = images
    Y = Y.copy()
    Y[:18, 0] = "dark"  # 18 dark, 6 light
    weights = np.r_[np.full(12, 2.0), np.ones(12)]
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0,
                                    class_weight="balanced").fit(X, Y, sample_weight=weights)
    codes = [np.unique(Y[:, k], return_inverse=True)[1] for k in range(2)]
    expected = np.concatenate([compute_class_weight("balanced", classes=np.unique(c), y=c, sample_weight=weights)
                               for c in codes])
    np.testing.assert_allclose(clf._output_class_weights, expected, rtol=1e-6)
    plain = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0).fit(X, Y)
    minority = [m.predict_proba(X)[0][:, 1].mean() for m in (plain, clf)]
    assert minority[1] > minority[0]
    with pytest.raises(ValueError, match="class_weight as a dict"):
        PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False,
                                  class_weight={"dark": 2}).fit(X, Y)


def test_sample_weight_scales_every_output(images):
    X, Y = images
    params = {"backbone": "test_efficientnet", "pretrained": False, "random_state": 0}
    base = PretrainedImageClassifier(**params).fit(X, Y).predict_proba(X)
    ones = PretrainedImageClassifier(**params).fit(X, Y, sample_weight=np.ones(len(X))).predict_proba(X)
    skewed = PretrainedImageClassifier(**params).fit(X, Y, sample_weight=np.r_[np.full(12, 5.0), np.full(12, 0.2)])
    for a, b, c in zip(base, ones, skewed.predict_proba(X)):
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert np.abs(a - c).max() > 1e-3


def test_the_feature_cache_and_a_trained_backbone(images, monkeypatch):
    X, Y = images
    params = {"backbone": "test_efficientnet", "pretrained": False, "random_state": 0}
    cached = PretrainedImageClassifier(**params, C=None).fit(X, Y)
    uncached = PretrainedImageClassifier(**params, C=None, cache=False).fit(X, Y)
    for a, b in zip(cached.predict_proba(X), uncached.predict_proba(X)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    force_raw_stage(monkeypatch)  # the backbone at every step: the embeddings are only an optimisation
    raw = PretrainedImageClassifier(**params, C=None).fit(X, Y)
    assert cached.features_cached_ and uncached.features_cached_ and not raw.features_cached_
    for a, b in zip(cached.predict_proba(X), raw.predict_proba(X)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    monkeypatch.undo()
    tuned = PretrainedImageClassifier(**params, freeze_layers="none", max_epochs=1).fit(X, Y)
    assert tuned.backbone_tuned_ and tuned.C_ is None and tuned.predict(X).shape == (24, 2)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs peft")
def test_lora_trains_adapters_for_every_output(tiny_bert_dir, texts):
    X, Y = texts
    clf = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, random_state=0, adapter=LoRA(r=1),
                                   lr=1e-2, max_epochs=2).fit(X, Y)
    assert clf.backbone_tuned_ and [p.shape for p in clf.predict_proba(X)] == [(24, 2), (24, 4)]
    expected = clf.predict_proba(X)
    for a, b in zip(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_pickle_save_load_and_onnx(image_clf, images, tmp_path):
    X, _ = images
    expected = image_clf.predict_proba(X)
    for other in (pickle.loads(pickle.dumps(image_clf)), sktransfer.load(image_clf.save(tmp_path / "m"))):
        assert [c.tolist() for c in other.classes_] == [c.tolist() for c in image_clf.classes_]
        np.testing.assert_array_equal(other.predict(X), image_clf.predict(X))
        for a, b in zip(other.predict_proba(X), expected):
            np.testing.assert_allclose(a, b, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    path = image_clf.export_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities_0", "probabilities_1"]
    pixels = torch.stack([image_clf._make_dataset(list(X))[i][0]["pixel_values"] for i in range(len(X))]).numpy()
    for a, b in zip(session.run(None, {"pixel_values": pixels}), expected):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_warm_start_and_partial_fit_keep_the_outputs(images):
    X, Y = images
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0, C=None,
                                    warm_start=True, max_epochs=1).fit(X, Y)
    clf.fit(X, Y)
    assert clf.predict(X).shape == (24, 2)
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X, np.where(Y == "red", "crimson", Y))
    with pytest.raises(ValueError, match="single-label"):
        clf.fit(X, Y[:, 0])
    assert clf.multioutput_ and len(clf.classes_) == 2  # a failed warm fit leaves the model as it was
    partial = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0)
    partial.partial_fit(X[:12], Y[:12], classes=[["dark", "light"], ["blue", "green", "red"]])
    partial.partial_fit(X[12:], Y[12:])
    assert partial.n_epochs_ == 1 and partial.predict(X).shape == (24, 2)
    with pytest.raises(ValueError, match="one label column, but classes holds one array per output"):
        partial.partial_fit(X, Y[:, 0])
    single = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False).partial_fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="2 label columns"):
        single.partial_fit(X, Y)


@pytest.mark.parametrize(("make_y", "params", "message"), [
    (lambda Y: np.column_stack([Y[:, 0], np.full(len(Y), "same")]), {}, "Output '1' of y has a single class"),
    (lambda Y: Y, {"output_weights": [1.0]}, "one weight per output"),
    (lambda Y: Y, {"output_weights": [1.0, -1.0]}, "finite positive"),
    (lambda Y: Y[:, 0], {"output_weights": [1.0, 2.0]}, "set output_weights=None"),
], ids=["single-class-column", "weights-length", "negative-weight", "weights-for-one-output"])
def test_bad_multioutput_input_is_refused(images, make_y, params, message):
    X, Y = images
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0, **params)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, make_y(Y))


def test_domain_adaptation_refuses_several_outputs(images):
    X, Y = images
    masked = Y.astype(object)
    masked[-4:] = None  # the unlabelled target rows
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, domain_adaptation="coral",
                                    head_hidden=(8,))
    with pytest.raises(ValueError, match="domain_adaptation is for"):
        clf.fit(X, masked, sample_domain=np.r_[np.ones(20), -np.ones(4)])


def test_distillation_refuses_several_outputs(image_clf, images):
    X, Y = images
    teacher = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="several columns"):
        PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, teacher=teacher).fit(X, Y)


def test_regressors_and_multilabel_are_unchanged(images):
    X, Y = images
    indicator = (Y == np.array(["light", "red"])).astype(int)
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0).fit(X, indicator)
    assert clf.multilabel_ and clf.predict_proba(X).shape == (24, 2) and clf.output_names_ is None
    reg = PretrainedImageRegressor(backbone="test_efficientnet", pretrained=False, random_state=0)
    assert reg.fit(X, indicator.astype(float) * [1.0, 3.0]).predict(X).shape == (24, 2)


def test_text_onnx_has_one_output_per_task(tiny_text_params, texts, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from transformers import AutoTokenizer

    X, Y = texts
    clf = PretrainedTextClassifier(**tiny_text_params).fit(X, Y)
    session = ort.InferenceSession(str(clf.export_onnx(tmp_path / "text.onnx")), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities_sentiment", "probabilities_topic"]
    tokens = AutoTokenizer.from_pretrained(tmp_path)(X, padding=True, truncation=True, max_length=clf.max_length,
                                                     return_tensors="np")
    outputs = session.run(None, {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]})
    for a, b in zip(outputs, clf.predict_proba(X)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_cross_validation_scores_by_subset_accuracy(images):
    X, Y = images
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0)
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(clf, X, Y, cv=cv)
    assert scores.shape == (3,)
    # A fold's score is the share of its rows with every output right (not the mean of per-output accuracies).
    train, test = next(cv.split(X))
    pred = clf.fit(X[train], Y[train]).predict(X[test])
    assert scores[0] == pytest.approx((pred == np.asarray(Y)[test]).all(axis=1).mean())

"""Unlabelled rows (``semi_supervised=``): self-training rounds, the pseudo-label stream, and how they compose."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, PretrainedTextRegressor, SelfTraining, load
from sktransfer._semi_supervised import _curriculum
from sktransfer._streams.base import StreamBatch
from sktransfer._streams.pseudo_label import RAMP, PseudoLabelStream


class ChannelMeans(nn.Module):
    """A backbone whose two features are an image's mean red and mean green value: the toy's embeddings."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 2)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(2))
            self.proj.bias.zero_()

    def forward(self, x):
        return self.proj(x.mean(dim=(2, 3))[:, :2])


@pytest.fixture(scope="module")
def blobs():
    """Two blobs of 60 images apart in green; one labelled image per class, the second far out in its blob, so
    that the labels alone put the boundary inside the second blob and the unlabelled rows show the gap."""
    rng = np.random.default_rng(0)
    n = 60
    green = np.r_[np.full(n, 90.0), np.full(n, 160.0)] + rng.normal(0, 15, 2 * n)
    red = 128 + rng.normal(0, 15, 2 * n)
    X = np.zeros((2 * n, 8, 8, 3), np.uint8)
    X[..., 0] = np.clip(red, 0, 255)[:, None, None]
    X[..., 1] = np.clip(green, 0, 255)[:, None, None]
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    labelled = np.r_[np.argmin(np.abs(green[:n] - 90)), n + np.argmin(np.abs(green[n:] - 200))]
    y_masked = np.full(2 * n, -1)
    y_masked[labelled] = y[labelled]
    return X, y, y_masked, labelled


@pytest.fixture
def toy_params() -> dict:
    return {"backbone": ChannelMeans(), "random_state": 0}


def test_self_training_learns_from_unlabelled_rows_that_carry_the_signal(blobs, toy_params):
    X, y, y_masked, labelled = blobs
    alone = PretrainedImageClassifier(**toy_params).fit(X[labelled], y[labelled])
    trained = PretrainedImageClassifier(**toy_params, semi_supervised="self_training").fit(X, y_masked)
    assert trained.n_unlabelled_rows_ == 118 and 100 <= trained.n_pseudo_labelled_ <= 118
    assert alone.score(X, y) < 0.97
    assert trained.score(X, y) >= alone.score(X, y) + 0.015  # half the errors (deterministic: seeded)
    assert trained.semi_supervised_.get_params() == SelfTraining().get_params()


def test_without_unlabelled_rows_it_warns_and_changes_nothing(image_data, tiny_image_params):
    X, y = image_data
    plain = PretrainedImageClassifier(**{**tiny_image_params, "max_epochs": 10}).fit(X, y)
    with pytest.warns(UserWarning, match="semi_supervised='self_training' has no effect: y has no unlabelled rows"):
        semi = PretrainedImageClassifier(**{**tiny_image_params, "max_epochs": 10},
                                         semi_supervised="self_training").fit(X, y)
    np.testing.assert_array_equal(semi.predict_proba(X), plain.predict_proba(X))
    assert semi.semi_supervised_ is None and semi.n_pseudo_labelled_ == 0


def test_a_threshold_no_row_reaches_labels_none(blobs, toy_params):
    X, _, y_masked, _ = blobs
    strict = PretrainedImageClassifier(**toy_params, semi_supervised=SelfTraining(threshold=0.9999)).fit(X, y_masked)
    assert strict.n_pseudo_labelled_ == 0


def test_curriculum_takes_the_surest_rows_of_each_class_up_to_its_quota():
    # 6 rows predicted class 0 confidently, 4 class 1 but only 1 of them above 0.8.
    proba = np.array([[0.95, 0.05]] * 6 + [[0.1, 0.9]] + [[0.4, 0.6]] * 3)
    assert _curriculum(proba, np.array([6, 4]), None).all()
    half = _curriculum(proba, np.array([3, 2]), None)
    assert half[:6].sum() == 3 and half[6:].sum() == 2 and half[6]  # the surest first
    strict = _curriculum(proba, np.array([6, 4]), 0.8)  # class 1 fills 1 of its 4: class 0 a quarter of its 6 too
    assert strict[:6].sum() == 1 and strict[6] and not strict[7:].any()
    assert not _curriculum(proba, np.array([6, 4]), 0.99).any()


def test_pseudo_label_loss_learns_confident_rows_only_and_ramps_up():
    stream = PseudoLabelStream(SelfTraining(threshold=0.8))
    outputs = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.1, 0.0], [0.0, 4.0]], requires_grad=True)
    labelled = torch.tensor([True, False, False, False])

    def batch(progress: float) -> StreamBatch:
        return StreamBatch(outputs=outputs, targets=torch.zeros(4, dtype=torch.long), features=outputs,
                           labelled=labelled, data=None, weights=None, progress=progress, modules={})

    full = stream.loss(batch(RAMP))
    confident = torch.nn.functional.cross_entropy(outputs[[1, 3]], torch.tensor([0, 1]), reduction="sum") / 3
    torch.testing.assert_close(full, confident)
    torch.testing.assert_close(stream.loss(batch(RAMP / 2)), full / 2)
    assert float(stream.loss(batch(0.0)).detach()) == 0.0
    full.backward()
    assert outputs.grad[2].abs().sum() == 0 and outputs.grad[0].abs().sum() == 0  # unconfident, labelled
    assert PseudoLabelStream(SelfTraining()).threshold == 0.95


def test_a_head_trained_by_epochs_uses_the_pseudo_label_stream(blobs, toy_params):
    X, y, y_masked, labelled = blobs
    params = {**toy_params, "C": None, "lr": 5e-2, "max_epochs": 20, "batch_size": 8,
              "semi_supervised": SelfTraining(threshold=0.7)}
    first = PretrainedImageClassifier(**params).fit(X, y_masked)
    assert [type(s).__name__ for s in first.net_.streams] == ["PseudoLabelStream"]
    again = PretrainedImageClassifier(**params).fit(X, y_masked)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    alone = PretrainedImageClassifier(**{**params, "semi_supervised": None}).fit(X[labelled], y[labelled])
    assert not np.allclose(first.predict_proba(X), alone.predict_proba(X))


def test_string_labels_class_weight_pipeline_gridsearch_pickle_and_save(blobs, toy_params, tmp_path):
    X, y, y_masked, _ = blobs
    names = np.array(["low", "high"], dtype=object)[y]
    y_names = np.where(y_masked >= 0, names, None)
    clf = PretrainedImageClassifier(**toy_params, class_weight="balanced", semi_supervised=SelfTraining(max_rounds=2))
    clf.fit(X, y_names)
    assert clf.n_pseudo_labelled_ > 100 and set(clf.classes_) == {"low", "high"}
    expected = clf.predict_proba(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected, atol=1e-6)
    loaded = load(clf.save(tmp_path / "model"), backbone=ChannelMeans())
    assert loaded.semi_supervised.get_params() == {"threshold": None, "max_rounds": 2, "weight": 1.0}
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-5)
    pipe = make_pipeline(PretrainedImageClassifier(**toy_params, semi_supervised=SelfTraining()))
    search = GridSearchCV(pipe, {"pretrainedimageclassifier__semi_supervised__max_rounds": [1, 3]}, cv=2)
    more = np.where(np.isin(np.arange(len(y)), np.r_[0:6, 60:66]), y, y_masked)
    search.fit(X, more)  # each fold's masked rows train, its labelled rows score
    assert search.best_params_["pretrainedimageclassifier__semi_supervised__max_rounds"] in (1, 3)


def test_composes_with_contrastive_tuning(tiny_text_params, text_data):
    X, y = text_data
    X_all = list(X) + ["good acting", "bad plot", "wonderful film", "terrible story"]
    y_all = list(y) + [None] * 4
    clf = PretrainedTextClassifier(**tiny_text_params, contrastive="cosine", semi_supervised="self_training")
    clf.fit(X_all, y_all)
    assert clf.contrastive_ is not None and clf.backbone_tuned_
    assert clf.n_pseudo_labelled_ == 4


def test_composes_with_a_teacher(tiny_text_params, text_data):
    X, y = text_data
    teacher = PretrainedTextClassifier(**tiny_text_params, C=1.0).fit(X, y)
    X_all, y_all = list(X) + ["good acting", "bad plot"], list(y) + [None, None]
    student = PretrainedTextClassifier(**tiny_text_params, teacher=teacher, semi_supervised="self_training")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student.fit(X_all, y_all)
    assert [type(s).__name__ for s in student.net_.streams] == ["DistillationStream", "PseudoLabelStream"]


@pytest.mark.parametrize("change, message", [
    ({"semi_supervised": SelfTraining(threshold=1.0)}, "threshold"),
    ({"semi_supervised": SelfTraining(max_rounds=0)}, "max_rounds"),
    ({"semi_supervised": "pseudo"}, "semi_supervised"),
])
def test_bad_settings_are_refused(blobs, toy_params, change, message):
    X, _, y_masked, _ = blobs
    with pytest.raises(ValueError, match=message):
        PretrainedImageClassifier(**{**toy_params, **change}).fit(X, y_masked)


def test_bad_labels_are_refused(blobs, toy_params, tiny_text_params):
    X, _, y_masked, _ = blobs
    with pytest.raises(ValueError, match="Every row of X is unlabelled"):
        PretrainedImageClassifier(**toy_params, semi_supervised="self_training").fit(X, np.full(len(X), -1))
    indicator = np.stack([y_masked.clip(0), 1 - y_masked.clip(0)], axis=1)
    with pytest.raises(ValueError, match="single-label y"):
        PretrainedImageClassifier(**toy_params, semi_supervised="self_training").fit(X, indicator)
    with pytest.raises(ValueError, match="NaN"):
        PretrainedTextRegressor(**tiny_text_params).fit(["good film", "bad film", "fine plot"], [1.0, np.nan, 0.0])

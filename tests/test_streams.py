"""Training streams: the protocol, a stream written in the tests, and domain adaptation with distillation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from sktransfer import PretrainedImageClassifier, merge_domains
from sktransfer._streams import SAMPLE_DOMAIN, STREAMS, StreamBatch, StreamRows, TrainingStream
from sktransfer._streams.distillation import SOFT_TARGETS
from sktransfer._streams.net import StreamLossMixin

FROZEN = {"backbone": "test_efficientnet", "pretrained": False, "max_epochs": 3, "batch_size": 8, "lr": 1e-2,
          "head_hidden": (16,), "random_state": 0}


# ------------------------------------------------------------------ a stream written as a new one would be
class FeaturePull(TrainingStream):
    """An L2 pull of the labelled rows' features towards zero; it records what each batch brought it."""

    name = "feature_pull"
    key = "row_id"

    def __init__(self, weight: float):
        self.weight = weight
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def batch_data(self, estimator, rows: StreamRows) -> np.ndarray:
        return np.arange(len(rows.items), dtype=np.int64)

    def loss(self, batch: StreamBatch) -> torch.Tensor:
        self.seen.append((batch.data.cpu().numpy(), batch.labelled.cpu().numpy()))
        return batch.features[batch.labelled].pow(2).sum(dim=1).mean()


@pytest.fixture
def feature_pull(monkeypatch):
    """Registers FeaturePull the documented way; returns the streams it made, one per fit."""
    made = []

    def factory(estimator):
        weight = getattr(estimator, "_test_pull", None)
        if weight is None:
            return None
        made.append(FeaturePull(weight))
        return made[-1]

    monkeypatch.setitem(STREAMS, FeaturePull.name, factory)
    return made


def _hidden_features(model, X) -> np.ndarray:
    head = model.net_.module_.head
    features = torch.as_tensor(model.transform(X))
    with torch.no_grad():
        return head.layers[:-2]((features - head.mean) / head.scale).numpy()


def _fit(X, y, pull: float | None = None) -> PretrainedImageClassifier:
    model = PretrainedImageClassifier(**FROZEN)
    model._test_pull = pull  # what the test factory reads, as a real one reads the estimator's parameters
    return model.fit(X, y)


def test_a_registered_stream_trains_with_the_fit(image_data, feature_pull):
    X, y = image_data
    plain, pulled = _fit(X, y), _fit(X, y, pull=10.0)
    (stream,) = feature_pull
    assert pulled.net_.streams == (stream,)
    # Every training batch brought the stream its rows' data; an epoch is one pass over the 16 labelled rows.
    ids = np.concatenate([data for data, _ in stream.seen])
    assert len(stream.seen) == FROZEN["max_epochs"] * 2
    assert sorted(ids.tolist()) == sorted(list(range(16)) * FROZEN["max_epochs"])
    assert all(labelled.all() for _, labelled in stream.seen)
    # The term shrank the features it pulls, and so changed the model.
    norm = [np.linalg.norm(_hidden_features(m, X), axis=1).mean() for m in (plain, pulled)]
    assert norm[1] < 0.5 * norm[0], norm
    assert not np.allclose(plain.predict_proba(X), pulled.predict_proba(X))


def test_a_stream_of_weight_zero_changes_nothing(image_data, feature_pull):
    X, y = image_data
    plain, zero = _fit(X, y), _fit(X, y, pull=0.0)
    assert len(feature_pull) == 1 and len(feature_pull[0].seen) > 0
    np.testing.assert_allclose(zero.predict_proba(X), plain.predict_proba(X), atol=1e-6)


# ------------------------------------------------------------------ domain adaptation with a teacher
class StripeTeacher(ClassifierMixin, BaseEstimator):
    """Says 0.8 for the class of the brighter half of the main diagonal, whatever the colours; records calls."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.calls_ = []
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float).mean(axis=3)
        self.calls_.append(len(X))
        i = np.arange(X.shape[1])
        main = X[:, i, i].mean(axis=1) > X[:, i, i[::-1]].mean(axis=1)
        return np.where(main[:, None], [[0.8, 0.2]], [[0.2, 0.8]])


@pytest.fixture(scope="module")
def shift():
    from test_domain_adaptation import shifted_images

    X_source, y_source = shifted_images(32, 0, 0.0)
    X_target, _ = shifted_images(32, 1, 40.0)
    X_test, _ = shifted_images(16, 2, 40.0)
    return (*merge_domains(X_source, y_source, X_target), X_test)


def _both(shift, **overrides):
    X, y, sample_domain, X_test = shift
    teacher = StripeTeacher().fit(X, [0, 1])
    params = {**FROZEN, "max_epochs": 2, "lr": 1e-3, "domain_adaptation": "mmd", "teacher": teacher, **overrides}
    model = PretrainedImageClassifier(**params).fit(X, y, sample_domain=sample_domain)
    return model, teacher, model.predict_proba(X_test)


def test_domain_adaptation_and_distillation_combine(shift, monkeypatch):
    batches = []
    get_loss = StreamLossMixin.get_loss

    def recording(self, y_pred, y_true, X=None, training=False):
        if training:
            batches.append((X[SAMPLE_DOMAIN].clone(), X[SOFT_TARGETS].clone(), y_true.clone()))
        return get_loss(self, y_pred, y_true, X=X, training=training)

    monkeypatch.setattr(StreamLossMixin, "get_loss", recording)
    model, teacher, proba = _both(shift)
    assert model.n_target_rows_ == model.n_unlabelled_rows_ == 32
    assert [type(s).__name__ for s in model.net_.streams] == ["DistillationStream", "DomainAdaptationStream"]
    assert teacher.calls_ == [64]  # one call: the source rows and the target rows, which both streams train on
    assert proba.shape == (16, 2) and np.allclose(proba.sum(axis=1), 1)
    # Every batch: as many source rows as target rows, each with its soft targets in X; y holds plain labels.
    for domains, soft, y_true in batches:
        assert (domains >= 0).sum() == (domains < 0).sum() == FROZEN["batch_size"]
        assert soft.shape == (2 * FROZEN["batch_size"], 2) and y_true.ndim == 1


def test_both_loss_terms_are_active(shift):
    _, _, reference = _both(shift)
    for overrides in ({"adaptation_weight": 0.0}, {"distill_weight": 0.0}, {"distill_weight": 1.0}):
        _, _, proba = _both(shift, **overrides)
        assert np.abs(proba - reference).max() > 1e-3, overrides

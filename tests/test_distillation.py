"""Knowledge distillation: ``teacher=``, ``distill_temperature``, ``distill_weight`` and unlabelled rows."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, PretrainedTextRegressor, load
from sktransfer._distill import soften
from sktransfer._streams.distillation import SOFT_TARGETS, distillation_loss

# Short head-only training on cached embeddings: a second or less per fit.
STUDENT = {"lr": 1e-2, "max_epochs": 20, "batch_size": 8}


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean KL(p || q) over rows."""
    return float((p * np.log(p / q)).sum(axis=1).mean())


def _flipped(y) -> np.ndarray:
    """Each label replaced by the other one (two classes)."""
    y = np.asarray(y)
    a, b = np.unique(y)
    return np.where(y == a, b, a)


@pytest.fixture(params=["text", "image"])
def case(request, text_data, image_data, tiny_text_params, tiny_image_params):
    """(class, params, X, y, a teacher fitted on the flipped labels): its predictions contradict y."""
    if request.param == "text":
        cls, params, (X, y) = PretrainedTextClassifier, tiny_text_params, text_data
    else:
        cls, params, (X, y) = PretrainedImageClassifier, tiny_image_params, image_data
    y = np.asarray(y)
    teacher = cls(**{**params, "C": 1.0}).fit(X, _flipped(y))
    return cls, params, X, y, teacher


class RecordingTeacher(ClassifierMixin, BaseEstimator):
    """A teacher that records what it was asked to predict and answers 0.3 / 0.7 for every row."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.calls_ = []
        return self

    def predict_proba(self, X):
        self.calls_.append(list(X))
        return np.tile([0.3, 0.7], (len(X), 1))


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.net_.module_.state_dict().items()}


# ------------------------------------------------------------------ the student learns from the teacher
def test_distilled_student_moves_toward_the_teacher(case):
    # The teacher learned the flipped labels: a student that ignored it would agree with y, not with it.
    cls, params, X, y, teacher = case
    proba = teacher.predict_proba(X)
    labels_only = cls(**{**params, **STUDENT}, teacher=teacher, distill_weight=0.0).fit(X, y)
    distilled = cls(**{**params, **STUDENT}, teacher=teacher, distill_weight=1.0).fit(X, y)
    assert _kl(proba, distilled.predict_proba(X)) < 0.2 * _kl(proba, labels_only.predict_proba(X))
    assert (distilled.predict(X) == teacher.predict(X)).mean() >= 0.9
    assert (labels_only.predict(X) == y).mean() >= 0.9
    # Mini-batch epochs, not the converged head solver (which never sees the teacher).
    assert distilled.C_ is None and distilled.n_epochs_ == STUDENT["max_epochs"]
    # The task's one net, with the distillation stream; its soft targets travel in the batch, not in y.
    assert type(distilled.net_).__name__ == "TransferNetClassifier"
    assert [type(s).__name__ for s in distilled.net_.streams] == ["DistillationStream"]
    assert distilled.net_.streams[0].key == SOFT_TARGETS


def test_weight_half_lies_between_labels_and_teacher(text_data, tiny_text_params):
    X, y = text_data
    teacher = RecordingTeacher().fit(X, y)
    target = np.tile([0.3, 0.7], (len(X), 1))
    gaps = [_kl(target, PretrainedTextClassifier(**{**tiny_text_params, **STUDENT}, teacher=teacher, distill_weight=w)
                .fit(X, y).predict_proba(X)) for w in (0.0, 0.5, 1.0)]
    assert gaps[2] < gaps[1] < gaps[0]


def test_unlabelled_rows_learn_from_the_teacher(text_data, tiny_text_params):
    # Two labelled rows (true labels) and 22 unlabelled ones; the teacher says the opposite of the labels.
    X, y = text_data
    y = np.asarray(y)
    teacher = PretrainedTextClassifier(**tiny_text_params, C=1.0).fit(X, _flipped(y))
    labelled = np.array([0, 6])
    masked = np.full(len(X), None, dtype=object)
    masked[labelled] = y[labelled]
    with_unlabelled = PretrainedTextClassifier(**{**tiny_text_params, **STUDENT}, teacher=teacher).fit(X, masked)
    without = PretrainedTextClassifier(**{**tiny_text_params, **STUDENT}, teacher=teacher).fit(
        [X[i] for i in labelled], y[labelled])
    assert with_unlabelled.n_unlabelled_rows_ == len(X) - 2 and without.n_unlabelled_rows_ == 0
    assert with_unlabelled.n_target_rows_ == 0
    proba = teacher.predict_proba(X)
    assert _kl(proba, with_unlabelled.predict_proba(X)) < 0.5 * _kl(proba, without.predict_proba(X))
    assert (with_unlabelled.predict(X) == teacher.predict(X)).mean() >= 0.9


def test_teacher_predicts_once_on_the_training_and_unlabelled_rows(tiny_text_params):
    # Integer labels, -1 marks the unlabelled rows; early stopping holds out labelled rows only.
    X = [f"good film {w}" for w in ("a", "b", "c", "d", "e", "f")] + [f"bad film {w}" for w in "abcdef"]
    y = np.array([1] * 6 + [0] * 6)
    y[[2, 9]] = -1
    teacher = RecordingTeacher().fit(X, [0, 1] * 6)
    student = PretrainedTextClassifier(**tiny_text_params, teacher=teacher, early_stopping=True,
                                       validation_fraction=0.25).fit(X, y)
    assert len(teacher.calls_) == 1
    seen = teacher.calls_[0]
    assert len(seen) == 10 - 3 + 2 and len(set(seen)) == len(seen)  # 10 labelled, 3 held out; 2 unlabelled
    assert {X[2], X[9]} <= set(seen)
    assert student.n_unlabelled_rows_ == 2 and list(student.classes_) == [0, 1]
    # Validation scores are those of the labelled held-out rows (the ones the teacher never saw): at the best
    # epoch, whose weights early stopping restored, they are the student's log-loss and accuracy on those rows.
    held_out = [i for i in range(len(X)) if y[i] != -1 and X[i] not in seen]
    assert len(held_out) == 3
    X_valid, y_valid = [X[i] for i in held_out], y[held_out]
    proba = student.predict_proba(X_valid)[np.arange(3), np.searchsorted(student.classes_, y_valid)]
    best = student.history_[student.best_epoch_ - 1]
    assert best["valid_loss"] == pytest.approx(-np.log(proba).mean(), rel=1e-4)
    assert best["valid_acc"] == pytest.approx(student.score(X_valid, y_valid))


@pytest.mark.parametrize("freeze_layers, cached", [("all", "features_cached_"), (-1, "prefix_cached_"),
                                                   ("none", None)])
def test_unlabelled_rows_at_every_stage(image_data, tiny_image_params, freeze_layers, cached):
    # Cached embeddings, a cached frozen prefix, raw images: the unlabelled rows join each kind of dataset.
    X, y = image_data
    y = np.where(y == "dark", 0, 1)
    y[[0, 15]] = -1
    teacher = RecordingTeacher().fit(X, [0, 1])
    student = PretrainedImageClassifier(**tiny_image_params, teacher=teacher, freeze_layers=freeze_layers)
    student.fit(X, y, sample_weight=np.linspace(0.5, 1.5, len(X)))
    assert [len(rows) for rows in teacher.calls_] == [len(X)]
    assert student.n_unlabelled_rows_ == 2 and student.C_ is None
    assert cached is None or getattr(student, cached)
    assert student.predict(X).shape == (len(X),)
    student.partial_fit(X[1:15], y[1:15])  # one more epoch, on labelled rows, with the same teacher
    assert len(teacher.calls_) == 2


def test_masked_rows_without_a_teacher_keep_their_error(text_data, tiny_text_params):
    X, y = text_data
    y = np.array(y, dtype=object)
    y[0] = None
    with pytest.raises(ValueError, match="missing labels"):
        PretrainedTextClassifier(**tiny_text_params).fit(X, y)


def test_a_pipeline_teacher_and_a_student_on_its_classes_in_another_order(text_data, tiny_text_params):
    X, y = text_data
    teacher = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, _flipped(y))
    teacher[-1].classes_ = teacher[-1].classes_[::-1].copy()  # columns in the other order: they are matched by label
    teacher[-1].coef_, teacher[-1].intercept_ = -teacher[-1].coef_, -teacher[-1].intercept_
    student = PretrainedTextClassifier(**{**tiny_text_params, **STUDENT}, teacher=teacher, distill_weight=1.0).fit(X, y)
    assert (student.predict(X) == teacher.predict(X)).mean() >= 0.9


# ------------------------------------------------------------------ scikit-learn: clone, grid search, pipelines
def test_gridsearch_over_the_temperature_never_refits_the_teacher(text_data, tiny_text_params):
    X, y = text_data
    teacher = PretrainedTextClassifier(**tiny_text_params, C=1.0).fit(X, _flipped(y))
    before, attributes = _state(teacher), set(vars(teacher))
    student = PretrainedTextClassifier(**{**tiny_text_params, **STUDENT}, teacher=teacher)
    assert clone(student).teacher is teacher
    search = GridSearchCV(student, {"distill_temperature": [1.0, 4.0]}, cv=2).fit(X, y)
    assert search.best_estimator_.teacher is teacher
    assert set(vars(teacher)) == attributes
    after = _state(teacher)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # The refitted student is the one a fresh fit with the best temperature (and the same teacher) gives.
    fresh = clone(student).set_params(**search.best_params_).fit(X, y)
    np.testing.assert_allclose(search.predict_proba(X), fresh.predict_proba(X), atol=1e-6)


def test_the_student_may_start_from_the_teachers_backbone(text_data, tiny_text_params):
    # Sequential transfer: backbone=teacher copies the teacher's fitted backbone; teacher=teacher teaches it.
    X, y = text_data
    teacher = PretrainedTextClassifier(**tiny_text_params, freeze_layers="none", lr=1e-2).fit(X, y)
    before = _state(teacher)
    student = PretrainedTextClassifier(**{**tiny_text_params, "backbone": teacher, **STUDENT}, teacher=teacher)
    student.fit(X, y)
    assert student.score(X, y) >= 0.9
    after = _state(teacher)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_truncated_student(text_data, tiny_text_params):
    X, y = text_data
    teacher = PretrainedTextClassifier(**tiny_text_params, freeze_layers="none", lr=1e-2).fit(X, y)
    student = PretrainedTextClassifier(**{**tiny_text_params, "backbone": teacher, **STUDENT}, keep_blocks=2,
                                       freeze_layers="none", teacher=teacher, distill_weight=1.0).fit(X, y)
    assert student.n_backbone_blocks_ == 2
    assert (student.predict(X) == teacher.predict(X)).mean() >= 0.9


# ------------------------------------------------------------------ the fitted student does without the teacher
@pytest.fixture
def distilled(text_data, tiny_text_params):
    X, y = text_data
    teacher = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)
    return PretrainedTextClassifier(**{**tiny_text_params, **STUDENT}, teacher=teacher).fit(X, y), X


def test_pickle_round_trip_and_predictions_without_the_teacher(distilled):
    student, X = distilled
    proba = student.predict_proba(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(student)).predict_proba(X), proba, atol=1e-6)
    student.set_params(teacher=None)  # the fitted student never calls the teacher again
    np.testing.assert_allclose(student.predict_proba(X), proba, atol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(student)).predict_proba(X), proba, atol=1e-6)


def test_save_and_load_with_teacher_none(distilled, tmp_path):
    student, X = distilled
    student.save(tmp_path / "student")
    loaded = load(tmp_path / "student", teacher=None)
    assert loaded.teacher is None
    np.testing.assert_allclose(loaded.predict_proba(X), student.predict_proba(X), atol=1e-6)


def test_load_needs_no_teacher(distilled, tmp_path):
    student, X = distilled
    student.save(tmp_path / "student")
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert "teacher" not in config["params_not_saved"] and config["params"]["teacher"] is None
    loaded = load(tmp_path / "student")
    assert loaded.teacher is None and loaded.distill_temperature == student.distill_temperature
    np.testing.assert_allclose(loaded.predict_proba(X), student.predict_proba(X), atol=1e-6)


# ------------------------------------------------------------------ the loss
def test_soft_targets_are_the_softmax_of_the_logits_over_t():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    proba = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
    for t in (0.5, 1.0, 4.0):
        expected = torch.softmax(torch.as_tensor(logits) / t, dim=1).numpy()
        np.testing.assert_allclose(soften(proba, t), expected, rtol=1e-6)
    np.testing.assert_allclose(soften(np.array([[1.0, 0.0]]), 2.0), [[1.0, 0.0]])  # zeros stay zeros, no NaN


def test_distillation_loss_is_t_squared_kl_and_zero_at_the_teacher():
    logits = torch.tensor([[1.0, -1.0, 0.5]])
    soft = torch.softmax(logits / 3.0, dim=1)
    assert float(distillation_loss(logits, soft, 3.0)[0]) == pytest.approx(0.0, abs=1e-6)
    other = torch.tensor([[0.0, 0.0, 0.0]])
    kl = torch.nn.functional.kl_div(torch.log_softmax(other / 3.0, dim=1), soft, reduction="sum")
    assert float(distillation_loss(other, soft, 3.0)[0]) == pytest.approx(9.0 * float(kl), rel=1e-5)


# ------------------------------------------------------------------ bad input
def _unfitted_teacher(X, y):
    return LogisticRegression()


def _regressor_teacher(X, y):
    return make_pipeline(TfidfVectorizer(), LinearRegression()).fit(X, np.arange(len(X)))


def _other_classes_teacher(X, y):
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, ["a", "b", "c"] * (len(X) // 3))


def _multilabel_teacher(X, y):
    Y = np.column_stack([np.arange(len(X)) % 2, np.arange(len(X)) // 2 % 2])
    return make_pipeline(TfidfVectorizer(), MultiOutputClassifier(LogisticRegression())).fit(X, Y)


@pytest.mark.parametrize("make_teacher, error, match", [
    (_unfitted_teacher, ValueError, "unfitted LogisticRegression: fit it first"),
    (_regressor_teacher, TypeError, "classifier with predict_proba"),
    (lambda X, y: "all-MiniLM-L6-v2", TypeError, "classifier with predict_proba"),
    (_other_classes_teacher, ValueError, r"teacher's classes \['a', 'b', 'c'\] differ"),
    (_multilabel_teacher, ValueError, "single-output classifiers"),
], ids=["unfitted", "regressor", "a-name", "other-classes", "multi-output"])
def test_bad_teachers_are_named(text_data, tiny_text_params, make_teacher, error, match):
    X, y = text_data
    student = PretrainedTextClassifier(**tiny_text_params, teacher=make_teacher(X, y))
    with pytest.raises(error, match=match):
        student.fit(X, y)


@pytest.mark.parametrize("param, value", [
    ("distill_temperature", 0.0), ("distill_temperature", -1.0), ("distill_weight", 1.5), ("distill_weight", -0.1),
])
def test_bad_temperature_and_weight(text_data, tiny_text_params, param, value):
    X, y = text_data
    teacher = RecordingTeacher().fit(X, y)
    with pytest.raises(ValueError, match=param):
        PretrainedTextClassifier(**tiny_text_params, teacher=teacher, **{param: value}).fit(X, y)


def test_teacher_with_multilabel_y_is_refused(text_data, tiny_text_params):
    # (teacher with domain_adaptation combines: tests/test_streams.py)
    X, y = text_data
    teacher = RecordingTeacher().fit(X, y)
    Y = np.column_stack([np.arange(len(X)) % 2, np.arange(len(X)) // 2 % 2])
    with pytest.raises(ValueError, match="single-output classifiers"):
        PretrainedTextClassifier(**tiny_text_params, teacher=teacher).fit(X, Y)


def test_regressors_take_no_teacher(text_data):
    X, y = text_data
    with pytest.raises(TypeError, match="teacher"):
        PretrainedTextRegressor(teacher=RecordingTeacher().fit(X, y))

"""Knowledge distillation: a student classifier learns from a fitted teacher's soft predictions.

**The form.** Distillation is a parameter of the student, ``teacher=fitted_model``, not a meta-estimator
``Distiller(teacher, student)``. The student stays the estimator that is fitted, searched, saved and
exported: ``distill_temperature``, ``distill_weight`` and every training option are its own top-level
parameters (``GridSearchCV(student, {"distill_temperature": [1, 2, 4]})``, not ``student__lr``), it is the
last step of a ``Pipeline`` as any classifier is, and the fitted object is the small model itself, with
no wrapper to forward ``predict``, ``transform``, ``save`` or ``export_onnx``. The teacher is fitted
before, like ``backbone=fitted_model``: ``clone`` passes it on as it is (see
``BackboneEstimator.__sklearn_clone__``), so a grid search never refits it, and no fit changes it.

This module owns the estimator side; the training stream (soft targets in the batches, the loss) is
:mod:`sktransfer._streams.distillation`.

- **which rows** (:func:`split_training_rows`): the labelled rows, and the rows whose label
  is masked (-1 for integer labels, None or NaN otherwise, as in :mod:`sktransfer._domain`), which are
  unlabelled rows with a teacher (without one they keep their usual meaning). With
  ``domain_adaptation`` as well, the unlabelled rows are the target-domain rows, and both streams train
  on them.
- **the targets** (:func:`soft_targets`): the teacher's ``predict_proba`` on the training rows and the
  unlabelled ones, computed once per fit and softened at temperature T (:func:`soften`: ``p_T``
  proportional to ``p ** (1 / T)``, which is ``softmax(logits / T)``). The validation rows have none, so
  validation scores and early stopping measure the true labels.
- **the loss**: ``(1 - w)`` times the task loss of the labelled rows plus ``w`` times the mean over the
  batch's rows of ``T^2 KL(p_T || softmax(z / T))`` (Hinton et al., 2015); ``w`` is ``distill_weight``.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._domain import MASKED_LABEL, _as_labels, check_sample_domain, masked_rows, split_domains, split_source_target
from ._validation import Interval

_FIX = "pass a fitted classifier (e.g. a fine-tuned PretrainedTextClassifier, or a fitted Pipeline), or teacher=None"


# ------------------------------------------------------------------ the teacher and its soft targets
def check_teacher(teacher: Any) -> None:
    """A ValueError or TypeError naming the problem and the fix unless ``teacher`` can teach."""
    if not hasattr(teacher, "predict_proba"):
        raise TypeError(f"teacher must be a classifier with predict_proba, got a {type(teacher).__name__}: {_FIX}.")
    try:
        check_is_fitted(teacher)
    except NotFittedError as err:
        raise ValueError(f"teacher is an unfitted {type(teacher).__name__}: fit it first (teacher.fit(X, y)); "
                         "the student learns from its predictions.") from err
    except TypeError:
        pass  # not a scikit-learn estimator: classes_ below tells whether it is fitted
    classes = getattr(teacher, "classes_", None)
    if classes is None:
        raise TypeError(f"teacher has no classes_ (the labels of its predict_proba columns): {_FIX}.")
    if getattr(teacher, "multilabel_", False) or np.asarray(classes, dtype=object).ndim != 1:
        raise ValueError("teacher predicts several outputs per sample (multi-label or multi-output); distillation is "
                         f"for single-output classifiers: {_FIX}.")


def teacher_columns(teacher_classes, classes: np.ndarray) -> np.ndarray:
    """The column of the teacher's ``predict_proba`` for each of the student's ``classes``."""
    theirs, ours = list(np.asarray(teacher_classes).tolist()), list(np.asarray(classes).tolist())
    if sorted(theirs, key=str) != sorted(ours, key=str):
        raise ValueError(
            f"teacher's classes {theirs} differ from the classes of y {ours}: the student learns the teacher's "
            "classes, so y's labelled rows must hold exactly those (label -1 or None marks unlabelled rows"
            + ("; recode a class named -1" if MASKED_LABEL in theirs else "") + ")."
        )
    return np.asarray([theirs.index(label) for label in ours])


def soften(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at temperature T: proportional to ``proba ** (1 / T)``, i.e. ``softmax(logits / T)``."""
    with np.errstate(divide="ignore"):
        logits = np.log(proba) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    return soft / soft.sum(axis=1, keepdims=True)


def _as_input(rows: list):
    """The rows as the teacher reads them: one array when they are same-shaped arrays (images), else a list."""
    if rows and all(isinstance(r, np.ndarray) for r in rows) and len({r.shape for r in rows}) == 1:
        return np.stack(rows)
    return rows


def soft_targets(teacher: Any, rows: list, classes: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's probabilities for ``rows`` (one call), columns in the order of ``classes``, at ``temperature``."""
    proba = teacher.predict_proba(_as_input(rows))
    proba = np.asarray(proba, dtype=np.float64) if not isinstance(proba, list) else None
    if proba is None or proba.shape != (len(rows), len(teacher.classes_)):
        raise ValueError(f"teacher.predict_proba must return one row of {len(teacher.classes_)} probabilities per "
                         f"sample (a single-output classifier): {_FIX}.")
    if not np.isfinite(proba).all() or (proba < 0).any() or not (proba.sum(axis=1) > 0).all():
        raise ValueError("teacher.predict_proba returned negative, infinite or all-zero rows; distillation needs "
                         "probabilities.")
    proba = proba[:, teacher_columns(teacher.classes_, classes)]
    return soften(proba / proba.sum(axis=1, keepdims=True), temperature)


# ------------------------------------------------------------------ the estimator side
DISTILLATION_PARAMETERS = {
    "teacher": "no_validation",  # check_teacher's messages name the fix
    "distill_temperature": [Interval(Real, 0, None, closed="neither")],
    "distill_weight": [Interval(Real, 0, 1, closed="both")],
}


def check_distillation(estimator) -> None:
    """The fit-time check of ``teacher``."""
    if estimator.teacher is not None:
        check_teacher(estimator.teacher)


def check_distilled_targets(estimator) -> None:
    """After the targets are encoded: a teacher teaches single-output classifiers whose classes it knows."""
    if estimator.teacher is None:
        return
    if estimator.multilabel_ or estimator.multioutput_:
        raise ValueError("distillation is for single-output classifiers, but y has several columns "
                         "(multi-label or multi-output): set teacher=None, or pass 1-D labels.")
    teacher_columns(estimator.teacher.classes_, estimator.classes_)


def split_training_rows(estimator, items, y, sample_weight, sample_domain):
    """Labelled rows and the rows the streams train on without labels: target rows for domain adaptation,
    and with a teacher or ``semi_supervised`` the unlabelled ones (masked labels, or ``sample_domain < 0``);
    records ``n_target_rows_`` and ``n_unlabelled_rows_``."""
    estimator.n_unlabelled_rows_ = 0
    if (estimator.teacher is None and estimator.semi_supervised is None) or y is None:
        return split_source_target(estimator, items, y, sample_weight, sample_domain)
    if estimator.domain_adaptation is not None:  # the unlabelled rows are the target rows
        split = split_source_target(estimator, items, y, sample_weight, sample_domain)
        estimator.n_unlabelled_rows_ = estimator.n_target_rows_
        return split
    labels = _as_labels(y)
    if len(labels) != len(items):  # the length check names it
        return split_source_target(estimator, items, y, sample_weight, sample_domain)
    unlabelled = masked_rows(labels)
    if sample_domain is not None:
        unlabelled = unlabelled | (check_sample_domain(sample_domain, len(items)) < 0)
    if not unlabelled.any():
        return split_source_target(estimator, items, y, sample_weight, sample_domain)
    items, y, sample_weight, rows = split_domains(items, y, sample_weight, sample_domain, mode="adapt",
                                                  name=type(estimator).__name__)
    estimator.n_target_rows_, estimator.n_unlabelled_rows_ = 0, len(rows)
    return items, y, sample_weight, rows

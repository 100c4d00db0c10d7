"""Knowledge distillation: a student classifier learns from a fitted teacher's soft predictions.

**The form.** Distillation is a parameter of the student, ``teacher=fitted_model``, not a meta-estimator
``Distiller(teacher, student)``. The student stays the estimator that is fitted, searched, saved and
exported: ``distill_temperature``, ``distill_weight`` and every training option are its own top-level
parameters (``GridSearchCV(student, {"distill_temperature": [1, 2, 4]})``, not ``student__lr``), it is the
last step of a ``Pipeline`` as any classifier is, and the fitted object is the small model itself, with
no wrapper to forward ``predict``, ``transform``, ``save`` or ``export_onnx``. The teacher is fitted
before, like ``backbone=fitted_model``: ``clone`` passes it on as it is (see
``BackboneEstimator.__sklearn_clone__``), so a grid search never refits it, and no fit changes it.

This module owns the stream from end to end:

- **which rows** (:meth:`DistillationMixin._split_domains`): the labelled rows, and the rows whose label
  is masked (-1 for integer labels, None or NaN otherwise, as in :mod:`sktransfer._domain`), which are
  unlabelled rows with a teacher (without one they keep their usual meaning).
- **the targets** (:meth:`DistillationMixin._add_teacher_stream`, one step of the fit plan): the
  teacher's ``predict_proba`` on the training rows and the unlabelled ones, computed once per fit and
  softened at temperature T (:func:`soften`: ``p_T`` proportional to ``p ** (1 / T)``, which is
  ``softmax(logits / T)``), travel with each row's label as its target: a float row ``(label, p_T)``,
  label -1 for unlabelled rows. The validation rows keep their plain labels, so validation scores and
  early stopping measure the true labels.
- **the loss** (:class:`DistillNetClassifier`): per row, ``(1 - w) CE(label) + w T^2 KL(p_T || softmax(z / T))``
  (Hinton et al., 2015), the cross-entropy term absent for unlabelled rows; ``w`` is ``distill_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.utils import to_tensor
from torch.nn import functional as F

from ._domain import MASKED_LABEL, _as_labels, check_sample_domain, masked_rows, split_domains
from ._net import TransferNetClassifier
from ._plan import SAMPLE_WEIGHT, FitPlan, precomputed_dataset
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
@dataclass(repr=False, eq=False, kw_only=True)
class DistillationMixin:
    """``teacher``, ``distill_temperature`` and ``distill_weight`` for the classifiers; goes before
    ``DomainAdaptationMixin``."""

    teacher: Any = None
    distill_temperature: float = 2.0
    distill_weight: float = 0.5

    _parameter_constraints = {
        "teacher": "no_validation",  # check_teacher's messages name the fix
        "distill_temperature": [Interval(Real, 0, None, closed="neither")],
        "distill_weight": [Interval(Real, 0, 1, closed="both")],
    }
    # Parameters save() writes as None: the fitted student predicts without them (see _persistence.py).
    _training_only_params = ("teacher",)

    def _validate(self) -> None:
        super()._validate()
        if self.teacher is None:
            return
        check_teacher(self.teacher)
        if self.domain_adaptation is not None:
            raise ValueError(
                f"teacher and domain_adaptation={self.domain_adaptation!r} cannot be combined: both read the rows "
                "with masked labels (unlabelled rows for distillation, target-domain rows for adaptation). Set "
                "domain_adaptation=None to distil, or teacher=None to adapt."
            )

    def _distilling(self) -> bool:
        return self.teacher is not None

    def _split_domains(self, items, y, sample_weight, sample_domain):
        """Labelled rows and, with a teacher, the unlabelled ones (masked labels, or ``sample_domain < 0``)."""
        self.n_unlabelled_rows_ = 0
        if self.teacher is None or y is None:
            return super()._split_domains(items, y, sample_weight, sample_domain)
        labels = _as_labels(y)
        if len(labels) != len(items):
            return super()._split_domains(items, y, sample_weight, sample_domain)  # the length check names it
        unlabelled = masked_rows(labels)
        if sample_domain is not None:
            unlabelled = unlabelled | (check_sample_domain(sample_domain, len(items)) < 0)
        if not unlabelled.any():
            return super()._split_domains(items, y, sample_weight, sample_domain)
        # The unlabelled rows as domain adaptation's target rows; the plan's teacher step trains on them.
        items, y, sample_weight, rows = split_domains(items, y, sample_weight, sample_domain, mode="adapt",
                                                      name=type(self).__name__)
        self.n_target_rows_, self.n_unlabelled_rows_ = 0, len(rows)
        return items, y, sample_weight, rows

    def _prepare_targets(self, y, n: int, classes=None) -> np.ndarray:
        encoded = super()._prepare_targets(y, n, classes)
        if self.teacher is not None:
            if self.multilabel_ or self.multioutput_:
                raise ValueError("distillation is for single-output classifiers, but y has several columns "
                                 "(multi-label or multi-output): set teacher=None, or pass 1-D labels.")
            teacher_columns(self.teacher.classes_, self.classes_)
        return encoded

    def _add_teacher_stream(self, plan: FitPlan, items: list, y: np.ndarray, weights: np.ndarray | None,
                            train_idx: np.ndarray, values: np.ndarray | None, unlabelled: list) -> FitPlan:
        """The fit plan's step for the teacher: soft targets for the training rows, then the unlabelled rows."""
        rows = [items[i] for i in train_idx] + list(unlabelled)
        soft = soft_targets(self.teacher, rows, self.classes_, self.distill_temperature)
        labels = np.concatenate([y[train_idx], np.full(len(unlabelled), MASKED_LABEL)])
        targets = np.column_stack([labels, soft]).astype(np.float32)
        if weights is not None:
            weights = np.concatenate([weights[train_idx], np.ones(len(unlabelled), dtype=np.float32)])
        if plan.stage.precomputed:
            extra = [self._embed(list(unlabelled), plan.module.encoder, prefix=plan.prefix)] if unlabelled else []
            plan.train_data = precomputed_dataset(plan.stage, np.concatenate([values[train_idx], *extra]), targets,
                                                  weights)
        else:
            plan.train_data = self._make_dataset(rows, targets, weights, augment=self._augment())
            plan.sampler = self._train_sampler(rows)
        # An epoch is one pass over the labelled and the unlabelled training rows.
        plan.n_train = len(rows)
        plan.callbacks = self._callbacks(plan.blocks, plan.n_train, plan.epochs, plan.rates.warmup,
                                         plan.valid_data is not None)
        return plan

    @property
    def _net_class(self):
        base = super()._net_class
        return DISTILL_NETS.get(base, base) if self.teacher is not None else base

    def _net_kwargs(self) -> dict:
        kwargs = super()._net_kwargs()
        if self.teacher is None:
            return kwargs
        return {**kwargs, "distill_temperature": self.distill_temperature, "distill_weight": self.distill_weight}


# ------------------------------------------------------------------ the loss
def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row, ``T^2 KL(soft || softmax(logits / T))``: the student's distance to the softened teacher."""
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    return temperature ** 2 * (torch.xlogy(soft, soft) - soft * log_student).sum(dim=1)


class _DistillNetMixin:
    """Reads training targets ``(label, soft targets)``; validation batches (plain labels) keep the task's loss."""

    def __init__(self, *args, distill_temperature=2.0, distill_weight=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.distill_temperature = distill_temperature
        self.distill_weight = distill_weight

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=y_pred.device)
        if y_true.ndim == 1:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        labels, soft = y_true[:, 0].long(), y_true[:, 1:].float()
        labelled = labels >= 0
        hard = self.criterion_(y_pred, labels.clamp(min=0))
        w = self.distill_weight
        loss = torch.where(labelled, (1 - w) * hard, torch.zeros_like(hard))
        loss = loss + w * distillation_loss(y_pred, soft, self.distill_temperature)
        weight = X.get(SAMPLE_WEIGHT) if isinstance(X, dict) else None
        if weight is not None:
            loss = loss * to_tensor(weight, device=loss.device)
        return loss.mean()


class DistillNetClassifier(_DistillNetMixin, TransferNetClassifier):
    """skorch net of the sktransfer classifiers trained with a teacher (single-label)."""


DISTILL_NETS = {TransferNetClassifier: DistillNetClassifier}

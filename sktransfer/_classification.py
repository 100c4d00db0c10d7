"""Classification targets: what makes an estimator a classifier (label encoding, loss, decoding, scores)."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn

from ._distill import DISTILLATION_PARAMETERS, check_distillation, check_distilled_targets, split_training_rows
from ._domain import DOMAIN_PARAMETERS, check_adaptable_targets, check_domain_adaptation, labelled_rows
from ._few_shot import LOSSES, Contrastive, choose_few_shot, resolve_contrastive
from ._multitask import (
    MultiOutputLoss,
    as_lists,
    check_output_weights,
    describe_targets,
    encode_outputs,
    output_class_weights,
    output_names,
    per_output,
    same_classes,
    split_proba,
    stack_labels,
    subset_accuracy,
    target_kind,
)
from ._net import TransferNet, TransferNetClassifier
from ._semi_supervised import SEMI_SUPERVISED_PARAMETERS, choose_semi_supervised, resolve_semi_supervised
from ._training import TrainableEstimator
from ._validation import Interval, StrOptions, check_target_length, fraction


def _missing(y: np.ndarray) -> np.ndarray:
    flat = y.reshape(len(y), -1)
    if flat.dtype.kind == "f":
        return np.isnan(flat).any(axis=1)
    if flat.dtype == object:
        return np.array([any(v is None or (isinstance(v, float) and v != v) for v in row) for row in flat], dtype=bool)
    return np.zeros(len(y), dtype=bool)


@dataclass(repr=False, eq=False, kw_only=True)
class ClassifierTask(ClassifierMixin, TrainableEstimator):
    """Single-label (binary or multiclass), multi-label or multi-output (multi-task) classification.

    A 1-D ``y`` of any labels is single-label (softmax, cross-entropy); a 2-D 0/1 indicator ``y`` is
    multi-label (one sigmoid per label, ``threshold`` decides); any other 2-D ``y`` of labels
    ("multiclass-multioutput") is one softmax task per column (see ``_multitask.py``).
    """

    label_smoothing: float = 0.0
    class_weight: dict | str | None = None
    threshold: float = 0.5
    output_weights: Any = None
    domain_adaptation: str | None = None
    adaptation_weight: float = 1.0
    teacher: Any = None
    distill_temperature: float = 2.0
    distill_weight: float = 0.5
    contrastive: Any = "auto"
    semi_supervised: Any = None

    _parameter_constraints = {
        "label_smoothing": [fraction],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "threshold": [Interval(Real, 0, 1, closed="neither")],
        "output_weights": [list, tuple, np.ndarray, None],
        **DOMAIN_PARAMETERS,
        **DISTILLATION_PARAMETERS,
        "contrastive": [StrOptions({"auto", *LOSSES}), Contrastive, None],
        **SEMI_SUPERVISED_PARAMETERS,
    }
    _training_only_params = ("teacher",)  # save() writes None: the fitted student predicts without its teacher

    # skada's metadata requests: sample_domain reaches fit (and is accepted by the prediction methods)
    # through Pipeline, cross_val_score and GridSearchCV once metadata routing is enabled.
    __metadata_request__fit = {"sample_domain": True}
    __metadata_request__predict = {"sample_domain": True, "allow_source": True}
    __metadata_request__predict_proba = {"sample_domain": True, "allow_source": True}
    __metadata_request__score = {"sample_domain": True, "allow_source": True, "sample_weight": True}

    def _validate(self) -> None:
        super()._validate()
        check_domain_adaptation(self)
        check_distillation(self)
        resolve_contrastive(self.contrastive)
        resolve_semi_supervised(self.semi_supervised)

    def _split_domains(self, items, y, sample_weight, sample_domain):
        return split_training_rows(self, items, y, sample_weight, sample_domain)

    def _prepare_targets(self, y, n: int, classes=None) -> np.ndarray:
        encoded = self._encode_targets(y, n, classes)
        check_adaptable_targets(self)
        check_distilled_targets(self)
        return encoded

    def _choose_strategies(self, y_encoded: np.ndarray, *, warm: bool) -> None:
        choose_few_shot(self, y_encoded, warm=warm)
        choose_semi_supervised(self)

    def _encode_targets(self, y, n: int, classes=None) -> np.ndarray:
        raw = y
        y = check_target_length(y, n)
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D labels or a 2-D 0/1 indicator matrix, got shape {y.shape}.")
        if _missing(y).any():
            bad = np.flatnonzero(_missing(y))[:5].tolist()
            raise ValueError(f"y has missing labels (None or NaN) at positions {bad}; drop or fill those rows.")
        try:
            kind = target_kind(y)
        except TypeError as err:
            raise TypeError(f"y mixes label types that cannot be compared ({err}); use one type, e.g. str.") from err
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if kind.startswith("continuous"):
            raise ValueError(
                f"Unknown label type: {kind}. A classifier needs discrete labels, but y holds continuous "
                f"numbers (e.g. {y.ravel()[:3].tolist()}): use a regressor (PretrainedImageRegressor or "
                "PretrainedTextRegressor), or bin the values into classes first."
            )
        self.multilabel_ = kind == "multilabel-indicator"
        self.multioutput_ = kind == "multiclass-multioutput" and y.ndim == 2
        self.output_names_ = output_names(raw, y.shape[1]) if self.multioutput_ else None
        if self.multioutput_:
            encoded, self.classes_ = encode_outputs(y, self.output_names_, classes)
            check_output_weights(self.output_weights, len(self.classes_))
            self.n_outputs_ = sum(len(c) for c in self.classes_)
            return encoded
        if self.output_weights is not None:
            raise ValueError("output_weights weighs the outputs of a multi-output y (several label columns); this "
                             f"y is {'multi-label' if self.multilabel_ else 'single-label'}: set output_weights=None.")
        if self.multilabel_:
            values = np.unique(y)
            if not np.isin(values, (0, 1)).all():
                raise ValueError(
                    "A 2-D y with two distinct numbers is read as a multi-label indicator matrix and must hold only "
                    f"0 and 1, got values {values[:5].tolist()}. For label lists use "
                    "sklearn.preprocessing.MultiLabelBinarizer; for one task per column (multi-output) pass the "
                    "labels as strings, e.g. y.astype(str)."
                )
            if self.class_weight is not None or self.label_smoothing:
                raise ValueError(
                    "class_weight and label_smoothing apply to single-label targets, not to a multi-label "
                    "indicator y: leave class_weight=None and label_smoothing=0 (weight rows with sample_weight)."
                )
            self.classes_ = np.arange(y.shape[1])
            self.n_outputs_ = y.shape[1]
            return y.astype(np.float32)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D labels or a 2-D 0/1 indicator matrix, got shape {y.shape}.")
        if per_output(classes):
            raise ValueError("y has one label column, but classes holds one array per output (the classifier was "
                             "fitted on several label columns): pass y with one column per output, or set "
                             "warm_start=False to start afresh.")
        encoder = LabelEncoder()
        try:
            encoder.fit(y if classes is None else np.asarray(classes))
            unseen = set(y.tolist()) - set(encoder.classes_.tolist())
            if unseen:
                raise ValueError(
                    f"y has labels not in classes: {sorted(unseen, key=str)[:5]}; the classifier knows "
                    f"{encoder.classes_.tolist()}. Pass every label to the first partial_fit call (classes=...)."
                )
            encoded = encoder.transform(y)
        except TypeError as err:
            raise TypeError(f"y mixes label types that cannot be compared ({err}); use one type, e.g. str.") from err
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has a single class ({self.classes_[0]!r}), but a classifier needs more than one class: add "
                "samples of at least one other class."
            )
        self.n_outputs_ = len(self.classes_)
        return encoded.astype(np.int64)

    def partial_fit(self, X, y, classes=None, sample_weight=None) -> ClassifierTask:
        """Train for one epoch on ``(X, y)``, continuing from the current weights and head.

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, in any of the forms ``fit`` accepts.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels; after the first call, each must be one of ``classes_``.
        classes : array-like or list of array-like, default=None
            Every label the classifier will see (one array per output for a multi-output ``y``); needed
            in the first call unless ``y`` holds them all. Later calls must pass the same labels or None.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the training loss.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        fitted = hasattr(self, "net_")
        if fitted and self.multioutput_:
            if classes is not None and not same_classes(classes, self.classes_):
                raise ValueError("classes must stay classes_ (one array per output) after the first partial_fit.")
            classes = self.classes_
        elif fitted:
            known = sorted(self.classes_.tolist(), key=str)
            if classes is not None and sorted(np.unique(classes).tolist(), key=str) != known:
                raise ValueError(
                    f"classes must stay {self.classes_.tolist()} after the first partial_fit, got {list(classes)}."
                )
            classes = self.classes_
        self._fit(X, y, sample_weight, warm=fitted, classes=classes, epochs=1, incremental=True)
        self._compile_runtime(X)
        return self

    def _check_same_targets(self, before: dict) -> None:
        """After ``_prepare_targets`` in a warm fit: the targets must be those the fitted head was made for."""
        now = describe_targets(vars(self))
        if now != describe_targets(before):
            raise ValueError(f"y is {now}, but the classifier was fitted on {describe_targets(before)} targets; call "
                             "fit with warm_start=False to start afresh.")
        if not same_classes(self.classes_, before["classes_"], ordered=True):
            raise ValueError(
                f"warm_start=True and partial_fit need the same classes as the previous fit "
                f"({as_lists(before['classes_'])}), got {as_lists(self.classes_)}; pass every label to the first "
                "partial_fit call (classes=...), or set warm_start=False to start afresh."
            )

    def _sample_weights(self, y_encoded, sample_weight, n: int):
        weights = super()._sample_weights(y_encoded, sample_weight, n)
        if self.multioutput_:
            # Per output, so they go into the loss (MultiOutputLoss), not into the rows' weights.
            self._output_class_weights = output_class_weights(y_encoded, self.classes_, self.class_weight, weights)
            return weights
        if self.class_weight is None or self.multilabel_:
            return weights
        class_weight = self.class_weight
        if isinstance(class_weight, dict):
            unknown = set(class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names labels not in y: {sorted(unknown, key=str)}.")
            class_weight = {int(np.flatnonzero(self.classes_ == k)[0]): v for k, v in class_weight.items()}
        # As scikit-learn does: "balanced" counts each class by its summed sample weight.
        present = np.unique(y_encoded)
        per_class = np.ones(self.n_outputs_)
        per_class[present] = compute_class_weight(class_weight, classes=present, y=y_encoded, sample_weight=weights)
        balanced = per_class[y_encoded].astype(np.float32)
        return balanced if weights is None else balanced * weights

    def _stratify_targets(self, y_encoded):
        return None if self.multilabel_ or self.multioutput_ else y_encoded

    @property
    def _net_class(self):
        return TransferNet if self.multilabel_ or self.multioutput_ else TransferNetClassifier

    def _sizes(self) -> list[int]:
        return [len(c) for c in self.classes_]

    def _criterion(self):
        if self.multioutput_:
            return MultiOutputLoss(self._sizes(), check_output_weights(self.output_weights, len(self.classes_)),
                                   getattr(self, "_output_class_weights", None), self.label_smoothing)
        if self.multilabel_:
            return nn.BCEWithLogitsLoss(reduction="none")
        return nn.CrossEntropyLoss(reduction="none", label_smoothing=self.label_smoothing)

    def _export_output(self) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        return ("sigmoid" if self.multilabel_ else "softmax"), None, None

    def _export_splits(self) -> list[tuple[str, int]] | None:
        return list(zip(self.output_names_.tolist(), self._sizes())) if self.multioutput_ else None

    def _solver_kind(self) -> str | None:
        # Label smoothing is no logistic loss: such heads train by epochs.
        if self.label_smoothing:
            return None
        return "multioutput" if self.multioutput_ else "multilabel" if self.multilabel_ else "multiclass"

    def _net_kwargs(self) -> dict:
        if self.multioutput_:
            return {"predict_nonlinearity": None}  # the logits of every output; split_proba applies the softmaxes
        if self.multilabel_:
            # skorch's default for BCE is a binary (n, 2) output; multi-label needs one sigmoid per label.
            return {"predict_nonlinearity": torch.sigmoid}
        return {"classes": list(range(self.n_outputs_))}

    def predict_proba(self, X, sample_domain=None, allow_source=True) -> np.ndarray | list[np.ndarray]:
        """Class probabilities, columns in the order of ``classes_`` (per-label for multi-label).

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, in any of the forms ``fit`` accepts; source or target domain alike.
        sample_domain : array-like of shape (n_samples,), default=None
            Ignored (a row's prediction does not depend on its domain); accepted for skada's scorers
            and pipelines.
        allow_source : bool, default=True
            Ignored; accepted for skada's scorers and pipelines.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), or list of such arrays
            One row per input; rows sum to 1 for single-label targets. For a multi-output ``y``, a
            list with one array per output, columns in the order of that output's ``classes_[k]``
            (as ``MultiOutputClassifier`` gives them).
        """
        check_is_fitted(self)
        if self.multioutput_:
            return split_proba(self._outputs(X), self._sizes())
        return self._outputs(X).astype(np.float64)

    def predict(self, X, sample_domain=None, allow_source=True) -> np.ndarray:
        """Predicted labels (a 0/1 indicator matrix for multi-label targets).

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, in any of the forms ``fit`` accepts; source or target domain alike.
        sample_domain : array-like of shape (n_samples,), default=None
            Ignored; accepted for skada's scorers and pipelines.
        allow_source : bool, default=True
            Ignored; accepted for skada's scorers and pipelines.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,), (n_samples, n_labels) or (n_samples, n_outputs)
            One label from ``classes_`` per input, one 0/1 row per input for multi-label targets, or
            one label per output for multi-output targets.
        """
        proba = self.predict_proba(X)
        if self.multioutput_:
            return stack_labels([labels[np.argmax(p, axis=1)] for labels, p in zip(self.classes_, proba)])
        if self.multilabel_:
            return (proba >= self.threshold).astype(int)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, sample_weight=None, sample_domain=None, allow_source=True) -> float:
        """Return the accuracy on ``(X, y)`` (subset accuracy for multi-label and multi-output targets).

        Labels not seen in fit raise a ``ValueError`` that names them.

        Parameters
        ----------
        X : sequence of inputs
            Images or texts, in any of the forms ``fit`` accepts.
        y : array-like of shape (n_samples,), (n_samples, n_labels) or (n_samples, n_outputs)
            True labels. With ``sample_domain``, ``domain_adaptation`` or ``semi_supervised``, rows with
            masked labels (-1, None, NaN: unlabelled rows) are left out.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights.
        sample_domain : array-like of shape (n_samples,), default=None
            Accepted for skada's scorers and pipelines; only the labels decide which rows count.
        allow_source : bool, default=True
            Ignored; accepted for skada's scorers.

        Returns
        -------
        score : float
            Mean accuracy of ``predict(X)`` against ``y``; for multi-output targets the share of rows
            whose every output is right (``MultiOutputClassifier.score``).
        """
        check_is_fitted(self)
        if sample_domain is not None or self.domain_adaptation is not None or self.semi_supervised is not None:
            X, y, sample_weight = labelled_rows(self._check_inputs(X), y, sample_weight)
        if self.multioutput_:
            return subset_accuracy(y, self.predict(X), sample_weight)
        if not self.multilabel_:
            shape = np.shape(y)
            if len(shape) == 2 and shape[1] != 1 or len(shape) > 2:
                raise ValueError(
                    f"y has shape {shape}, but this classifier was fitted on 1-D labels: pass one label per sample."
                )
            unseen = set(np.asarray(y, dtype=object).ravel().tolist()) - set(self.classes_.tolist())
            if unseen:
                raise ValueError(
                    f"y has labels not seen during fit: {sorted(unseen, key=str)[:5]}; "
                    f"the classifier knows {self.classes_.tolist()}."
                )
        return super().score(X, y, sample_weight=sample_weight)

"""Multi-task classification: several label columns, one shared backbone, one softmax head per column.

A classifier reads a 2-D ``y`` as scikit-learn's ``type_of_target`` does: all values 0/1 is a
multi-label indicator matrix (one sigmoid per column); "multiclass-multioutput" (a column with more
than two values, or labels that are not 0/1, e.g. strings) is one classification task per column.
The head's last layer has ``sum(n_classes per output)`` units; output ``k`` reads its own slice
through a softmax, and a row's loss is ``sum_k output_weights[k] * CE_k`` (class weights per output).

With a frozen backbone and a linear head, the problem separates across outputs: each slice is
solved to convergence on its own column (see :func:`fit_multioutput_head`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import softmax
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import type_of_target
from torch import nn

from ._solver import LinearSolution, fit_linear_head
from ._validation import check_finite_targets


def target_kind(y: np.ndarray) -> str:
    """``type_of_target``; a 2-D object ``y`` whose columns each hold one label type is "multiclass-multioutput"."""
    check_finite_targets(y)  # before type_of_target, whose cast would warn
    try:
        kind = type_of_target(y, input_name="y")
    except TypeError:
        kind = "unknown"
    if kind != "unknown" or y.ndim != 2 or y.shape[1] < 2 or y.dtype != object:
        return kind if kind != "unknown" else type_of_target(y, input_name="y")
    kinds = {type_of_target(np.asarray(column.tolist()), input_name="y") for column in y.T}
    if kinds <= {"binary", "multiclass"}:
        return "multiclass-multioutput"
    return type_of_target(y, input_name="y")


def output_names(raw, n_outputs: int) -> np.ndarray:
    """The outputs' names: a DataFrame's column names as str, else ``"0", "1", ...``."""
    columns = getattr(raw, "columns", None)
    names = [str(c) for c in columns] if columns is not None and len(columns) == n_outputs else None
    if names is None or len(set(names)) != n_outputs:
        names = [str(k) for k in range(n_outputs)]
    return np.asarray(names, dtype=object)


def per_output(classes) -> bool:
    """Whether ``classes`` holds one array of labels per output (a multi-output classifier's ``classes_``)."""
    return isinstance(classes, (list, tuple)) and len(classes) > 0 and all(np.ndim(c) == 1 for c in classes)


def encode_outputs(y: np.ndarray, names: np.ndarray, classes=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Integer codes of shape (n_samples, n_outputs) and each output's sorted labels."""
    if classes is not None and not (per_output(classes) and len(classes) == y.shape[1]):
        raise ValueError(f"y has {y.shape[1]} label columns (multi-output), so classes must be a list of "
                         f"{y.shape[1]} arrays, one per output. A classifier fitted on other targets cannot continue "
                         "on these: set warm_start=False (or start a new partial_fit) to start afresh.")
    codes, all_classes = np.empty(y.shape, dtype=np.int64), []
    for k in range(y.shape[1]):
        column = np.asarray(y[:, k].tolist())
        encoder = LabelEncoder()
        try:
            encoder.fit(column if classes is None else np.asarray(classes[k]))
            unseen = set(column.tolist()) - set(encoder.classes_.tolist())
            if unseen:
                raise ValueError(f"Output {names[k]!r} has labels not in classes: {sorted(unseen, key=str)[:5]}; "
                                 f"it knows {encoder.classes_.tolist()}.")
            codes[:, k] = encoder.transform(column)
        except TypeError as err:
            raise TypeError(f"Output {names[k]!r} mixes label types that cannot be compared ({err}); use one type "
                            "per column, e.g. str.") from err
        if len(encoder.classes_) < 2:
            raise ValueError(f"Output {names[k]!r} of y has a single class ({encoder.classes_[0]!r}): each output "
                             "needs at least two classes; drop that column.")
        all_classes.append(encoder.classes_)
    return codes, all_classes


def check_output_weights(output_weights, n_outputs: int) -> np.ndarray | None:
    """``output_weights`` as float32, checked against the number of outputs (None: all 1)."""
    if output_weights is None:
        return None
    try:
        weights = np.asarray(output_weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"output_weights must be {n_outputs} positive numbers, one per output ({err}).") from err
    if weights.shape != (n_outputs,):
        raise ValueError(f"output_weights must hold one weight per output of y ({n_outputs}), got shape "
                         f"{weights.shape}.")
    if not np.isfinite(weights).all() or (weights <= 0).any():
        raise ValueError(f"output_weights must be finite positive numbers, got {weights.tolist()}; to leave an "
                         "output out, drop its column from y.")
    return weights.astype(np.float32)


def output_class_weights(codes: np.ndarray, classes: list[np.ndarray], class_weight,
                         sample_weight: np.ndarray | None) -> np.ndarray | None:
    """Per-class loss weights of every output, concatenated (None: no ``class_weight``)."""
    if class_weight is None:
        return None
    if class_weight != "balanced":
        raise ValueError("class_weight as a dict is for single-output labels; with several outputs use "
                         "class_weight='balanced' (per output) or None.")
    parts = []
    for k, labels in enumerate(classes):
        present = np.unique(codes[:, k])
        per_class = np.ones(len(labels))
        # As scikit-learn does: "balanced" counts each class by its summed sample weight.
        per_class[present] = compute_class_weight("balanced", classes=present, y=codes[:, k],
                                                  sample_weight=sample_weight)
        parts.append(per_class)
    return np.concatenate(parts).astype(np.float32)


def describe_targets(attributes: dict) -> str:
    """The kind of classification targets that a classifier's fitted attributes record, for messages."""
    if attributes.get("multioutput_", False):
        return "multi-output (several label columns)"
    return "multi-label (a 0/1 indicator matrix)" if attributes["multilabel_"] else "single-label"


def as_lists(classes) -> list:
    """``classes_`` as (lists of) plain lists, for messages."""
    return [np.asarray(c).tolist() for c in classes] if isinstance(classes, list) else np.asarray(classes).tolist()


def same_classes(a, b, ordered: bool = False) -> bool:
    """Whether two ``classes_`` (an array, or a list of arrays for multi-output) name the same labels."""
    if isinstance(a, list) != isinstance(b, list):
        return False
    pairs = zip(a, b) if isinstance(a, list) else [(a, b)]
    if isinstance(a, list) and len(a) != len(b):
        return False
    key = (lambda c: np.asarray(c).tolist()) if ordered else (lambda c: sorted(np.unique(c).tolist(), key=str))
    return all(key(x) == key(y) for x, y in pairs)


class MultiOutputLoss(nn.Module):
    """Per row: ``sum_k output_weights[k] * CE(logits[:, slice_k], y[:, k])``, class-weighted per output."""

    def __init__(self, sizes: list[int], output_weights: np.ndarray | None = None,
                 class_weight: np.ndarray | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.label_smoothing = label_smoothing
        ones = np.ones(len(self.sizes)) if output_weights is None else output_weights
        self.register_buffer("output_weights", torch.as_tensor(ones, dtype=torch.float32))
        ones = np.ones(sum(self.sizes)) if class_weight is None else class_weight
        self.register_buffer("class_weight", torch.as_tensor(ones, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = zip(logits.float().split(self.sizes, dim=1), self.class_weight.split(self.sizes))
        losses = [F.cross_entropy(part, target[:, k].long(), weight=weight, reduction="none",
                                  label_smoothing=self.label_smoothing) for k, (part, weight) in enumerate(parts)]
        return (torch.stack(losses, dim=1) * self.output_weights).sum(dim=1)


def split_proba(logits: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """One (n_samples, n_classes_k) array of softmax probabilities per output."""
    bounds = np.cumsum(sizes)[:-1]
    return [softmax(part.astype(np.float64), axis=1) for part in np.split(logits, bounds, axis=1)]


def stack_labels(columns: list[np.ndarray]) -> np.ndarray:
    """(n_samples, n_outputs) labels; object dtype where the outputs' label types differ."""
    if len({c.dtype.kind for c in columns}) == 1:
        return np.column_stack(columns)
    return np.column_stack([c.astype(object) for c in columns])


def subset_accuracy(y_true, y_pred: np.ndarray, sample_weight=None) -> float:
    """The share of rows whose every output is right, as ``MultiOutputClassifier.score`` defines it."""
    raw = y_true.to_numpy() if hasattr(y_true, "to_numpy") else y_true
    y_true = np.asarray(raw, dtype=object)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y has shape {y_true.shape}, but this classifier predicts {y_pred.shape[1]} outputs per "
                         f"sample: pass y of shape {y_pred.shape}.")
    right = (y_true == y_pred.astype(object)).all(axis=1)
    return float(np.average(right, weights=sample_weight))


def fit_multioutput_head(features: np.ndarray, codes: np.ndarray, criterion: MultiOutputLoss, *,
                         sample_weight: np.ndarray | None, C: float | str, random_state: int) -> LinearSolution:
    """Each output's softmax slice solved on its own column (the objective separates across outputs).

    Output ``k``'s rows are weighted by ``sample_weight * output_weights[k] * class weight``: the same
    objective as ``C * output_weights[k]`` for that slice, since the solver does not rescale weights.
    """
    base = np.ones(len(features)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    output_weights = criterion.output_weights.cpu().numpy().astype(np.float64)
    class_weight = criterion.class_weight.cpu().numpy().astype(np.float64)
    offsets = np.concatenate([[0], np.cumsum(criterion.sizes)[:-1]])
    solutions = [
        fit_linear_head(features, codes[:, k], kind="multiclass", n_outputs=size,
                        sample_weight=base * output_weights[k] * class_weight[start + codes[:, k]], C=C,
                        random_state=random_state)
        for k, (size, start) in enumerate(zip(criterion.sizes, offsets))
    ]
    used = np.array([s.C for s in solutions]) if C == "cv" else float(solutions[0].C)
    return LinearSolution(np.concatenate([s.weight for s in solutions]), np.concatenate([s.bias for s in solutions]),
                          used)

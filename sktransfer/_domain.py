"""Domain adaptation: training on labelled source rows and unlabelled target-domain rows together.

This module owns the estimator side; the training stream (batches, loss) is
:mod:`sktransfer._streams.domain`.

- **which rows** (:func:`split_domains`): rows of ``X`` are target rows when ``sample_domain`` is
  negative (skada's convention: ``>= 0`` source, ``< 0`` target), or, without ``sample_domain``, when
  their label is masked: ``-1`` for numeric labels (skada's
  ``_DEFAULT_MASKED_TARGET_CLASSIFICATION_LABEL``), ``None`` or NaN for string (or any) labels.
  :func:`merge_domains` builds ``(X, y, sample_domain)`` from separate source and target data.
- **the parameters** (:data:`DOMAIN_PARAMETERS`; fields of ``ClassifierTask``, which also holds skada's
  metadata requests and the prediction methods that accept skada's arguments): ``domain_adaptation``,
  ``adaptation_weight`` and their checks.
- **the batches and the loss** (the stream): the target rows become a dataset like the source rows'
  (precomputed through the same cache when the backbone is frozen, raw otherwise), carried with
  ``sample_domain < 0`` in the batch; every training batch holds ``batch_size`` rows of each domain,
  and an epoch is one pass over the source rows (as without adaptation). The loss is the
  classification loss of the source rows only, plus ``adaptation_weight`` times the adaptation term
  between the source and target rows' features: the inputs of the head's last linear layer (the last
  hidden layer's output with ``head_hidden``, else the standardised backbone embedding).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ._domain_losses import METHODS
from ._validation import Interval, StrOptions

MASKED_LABEL = -1  # skada's _DEFAULT_MASKED_TARGET_CLASSIFICATION_LABEL
SOURCE_DOMAIN, TARGET_DOMAIN = 1, -2  # skada's _DEFAULT_SOURCE_DOMAIN_LABEL, _DEFAULT_TARGET_DOMAIN_LABEL
_HOW = ("mark the unlabelled target-domain rows of X with sample_domain < 0 (and labels -1, or None for string "
        "labels), or give them the label -1 (None for string labels) without sample_domain; "
        "sktransfer.merge_domains(X_source, y_source, X_target) builds X, y and sample_domain for you")


# ------------------------------------------------------------------ which rows are target rows
def masked_rows(y: np.ndarray) -> np.ndarray:
    """Rows whose label is masked: ``-1`` (every column of a 2-D numeric ``y``), ``None`` or NaN."""
    flat = y.reshape(len(y), -1)
    if flat.dtype.kind in "iu":
        return (flat == MASKED_LABEL).all(axis=1)
    if flat.dtype.kind == "f":
        return np.isnan(flat).any(axis=1) | (flat == MASKED_LABEL).all(axis=1)
    if flat.dtype == object:
        missing = np.vectorize(lambda v: v is None or (isinstance(v, float) and v != v), otypes=[bool])
        return missing(flat).any(axis=1) if flat.size else np.zeros(len(y), dtype=bool)
    return np.zeros(len(y), dtype=bool)


def check_sample_domain(sample_domain, n: int) -> np.ndarray:
    """``sample_domain`` as ``n`` integers, or a ValueError/TypeError naming the problem and the fix."""
    raw = sample_domain.to_numpy() if hasattr(sample_domain, "to_numpy") else sample_domain
    if isinstance(raw, Integral) and not isinstance(raw, bool):
        raw = np.full(n, raw)
    domains = np.asarray(raw)
    if domains.ndim != 1 or len(domains) != n:
        raise ValueError(
            f"sample_domain must hold one domain per row of X ({n} rows), got shape {domains.shape}. "
            "Use >= 0 for source rows and < 0 for target rows."
        )
    integral = domains.dtype.kind in "iu" or (
        domains.dtype.kind == "f" and np.isfinite(domains).all() and (domains == np.round(domains)).all())
    if not integral:
        raise TypeError(
            f"sample_domain must be integers (>= 0: source rows, < 0: target rows, as in skada), got "
            f"dtype {domains.dtype} (e.g. {domains[:3].tolist()}). Pass e.g. np.where(is_target, -2, 1)."
        )
    return domains.astype(np.int64)


def _as_labels(y) -> np.ndarray:
    raw = y.to_numpy() if hasattr(y, "to_numpy") else y
    labels = np.asarray(raw)
    if labels.dtype.kind in "US" and any(v is None or isinstance(v, float) for v in np.ravel(raw)):
        labels = np.asarray(raw, dtype=object)
    return labels


def _plain(labels: np.ndarray) -> np.ndarray:
    """Source labels without their masked neighbours: an object array of all-str or all-int as such."""
    if labels.dtype != object or labels.ndim != 1 or not len(labels):
        return labels
    if all(isinstance(v, str) for v in labels):
        return labels.astype(str)
    if all(isinstance(v, Integral) and not isinstance(v, bool) for v in labels):
        return labels.astype(np.int64)
    return labels


def split_domains(items: list, y, sample_weight, sample_domain, *, mode: str, name: str = "this estimator"):
    """Split the rows of a fit into source rows and target items.

    ``mode`` is "adapt" (a classifier with ``domain_adaptation``), "source_only" (a classifier
    without: target rows are dropped) or "refuse" (regressors: target rows are an error).

    Returns
    -------
    items, y, sample_weight, target_items
        The source rows' inputs, labels and weights, and the target rows' inputs (None unless "adapt").
    """
    if (sample_domain is None and mode != "adapt") or y is None:
        return items, y, sample_weight, None
    n = len(items)
    if mode == "refuse":
        if (check_sample_domain(sample_domain, n) < 0).any():
            raise ValueError(
                f"{name} does not do domain adaptation, but sample_domain marks target rows (< 0). Domain "
                "adaptation is for PretrainedImageClassifier and PretrainedTextClassifier; drop the target rows "
                "to train on the labelled ones."
            )
        return items, y, sample_weight, None
    labels = _as_labels(y)
    if len(labels) != n:
        return items, y, sample_weight, None  # the task's own check names the length mismatch
    masked = masked_rows(labels)
    if sample_domain is None:
        target = masked
    else:
        target = check_sample_domain(sample_domain, n) < 0
        labelled_targets = np.flatnonzero(target & ~masked)
        if len(labelled_targets):
            raise ValueError(
                f"y has labels at {len(labelled_targets)} target rows (sample_domain < 0), e.g. rows "
                f"{labelled_targets[:5].tolist()}; target labels are never used in fit: mask them with -1 (None "
                "for string labels), or give those rows sample_domain >= 0 to train on their labels."
            )
        masked_sources = np.flatnonzero(~target & masked)
        if len(masked_sources):
            raise ValueError(
                f"y has masked labels (-1, None or NaN) at {len(masked_sources)} source rows (sample_domain >= 0), "
                f"e.g. rows {masked_sources[:5].tolist()}: give them their labels, or sample_domain < 0 to use "
                "them as unlabelled target rows. (-1 marks unlabelled rows; recode a class named -1.)"
            )
    if target.all():
        raise ValueError(f"Every row of X is unlabelled (a masked label: -1, None or NaN) or a target row "
                         f"(sample_domain < 0): fit needs labelled rows as well. {_HOW[0].upper() + _HOW[1:]}.")
    if mode == "adapt" and not target.any():
        raise ValueError(f"domain_adaptation is set but X has no target rows: {_HOW}. Or set "
                         "domain_adaptation=None to train on the labelled rows alone.")
    if sample_weight is not None and len(np.asarray(sample_weight)) != n:
        raise ValueError(f"sample_weight must have one weight per row of X ({n}), got {len(sample_weight)}.")
    source = np.flatnonzero(~target)
    weights = None if sample_weight is None else np.asarray(sample_weight)[source]
    targets = [items[i] for i in np.flatnonzero(target)] if mode == "adapt" else None
    return [items[i] for i in source], _plain(labels[source]), weights, targets


def merge_domains(X_source, y_source, X_target):
    """Stack labelled source data and unlabelled target data into one ``fit`` call's inputs.

    Parameters
    ----------
    X_source : sequence of inputs
        Source-domain images or texts.
    y_source : array-like of shape (n_source,)
        Their labels.
    X_target : sequence of inputs
        Target-domain images or texts, without labels.

    Returns
    -------
    X : list or ndarray
        The source rows then the target rows (one array when both are arrays of the same shape).
    y : ndarray
        ``y_source`` then one masked label per target row: -1 for numeric labels, None otherwise.
    sample_domain : ndarray of int
        1 for source rows, -2 for target rows (skada's defaults).

    Examples
    --------
    >>> X, y, sample_domain = merge_domains(["good", "bad"], ["pos", "neg"], ["fine", "awful"])
    >>> y.tolist(), sample_domain.tolist()
    (['pos', 'neg', None, None], [1, 1, -2, -2])
    """
    y_source = _as_labels(y_source)
    n_source, n_target = len(y_source), len(X_target)
    if len(X_source) != n_source:
        raise ValueError(f"X_source and y_source have different lengths: {len(X_source)} and {n_source}.")
    if isinstance(X_source, np.ndarray) and isinstance(X_target, np.ndarray) \
            and X_source.shape[1:] == X_target.shape[1:] and X_source.dtype != object:
        X = np.concatenate([X_source, X_target])
    else:
        X = list(X_source.tolist() if isinstance(X_source, np.ndarray) and X_source.dtype.kind in "US" else X_source)
        X += list(X_target.tolist() if isinstance(X_target, np.ndarray) and X_target.dtype.kind in "US" else X_target)
    if y_source.dtype.kind in "iuf" and y_source.ndim == 1:
        y = np.concatenate([y_source, np.full(n_target, MASKED_LABEL, dtype=y_source.dtype)])
    else:
        y = np.concatenate([y_source.astype(object), np.full(n_target, None, dtype=object)])
    sample_domain = np.concatenate([np.full(n_source, SOURCE_DOMAIN), np.full(n_target, TARGET_DOMAIN)])
    return X, y, sample_domain


# ------------------------------------------------------------------ the estimator side
DOMAIN_PARAMETERS = {
    "domain_adaptation": [StrOptions(set(METHODS)), None],
    "adaptation_weight": [Interval(Real, 0, None, closed="left")],
}


def check_domain_adaptation(estimator) -> None:
    """The fit-time check of ``domain_adaptation``: something before the last linear layer must train."""
    if (estimator.domain_adaptation is not None and estimator.freeze_layers in ("auto", "all")
            and estimator.adapter is None and estimator.unfreeze_every is None and not estimator.head_hidden):
        raise ValueError(
            f"domain_adaptation={estimator.domain_adaptation!r} aligns trainable features, but with a frozen "
            "backbone (freeze_layers='all') and no hidden head layer nothing before the last linear layer trains. "
            "Add a hidden layer, e.g. head_hidden=(256,) (its output is aligned), or fine-tune the backbone "
            "(freeze_layers=-2, 'none', or adapter='lora')."
        )


def check_adaptable_targets(estimator) -> None:
    """After the targets are encoded: domain adaptation takes single- or multi-label targets only."""
    if estimator.multioutput_ and estimator.domain_adaptation is not None:
        raise ValueError("domain_adaptation is for single-label or multi-label y, but y has several label columns "
                         "(multi-output): set domain_adaptation=None, or adapt one model per output.")


def split_source_target(estimator, items, y, sample_weight, sample_domain):
    """The source rows and, with ``domain_adaptation``, the target rows; records ``n_target_rows_``."""
    mode = "source_only" if estimator.domain_adaptation is None else "adapt"
    items, y, sample_weight, target = split_domains(items, y, sample_weight, sample_domain, mode=mode,
                                                    name=type(estimator).__name__)
    estimator.n_target_rows_ = 0 if target is None else len(target)
    return items, y, sample_weight, target


def labelled_rows(items: list, y, sample_weight):
    """The rows of a scored ``(items, y)`` whose labels are not masked, their plain labels and weights."""
    labels = _as_labels(y)
    keep = np.flatnonzero(~masked_rows(labels)) if len(labels) == len(items) else np.arange(len(items))
    if not len(keep):
        raise ValueError("score needs labelled rows, but every label in y is masked (-1, None or NaN).")
    weights = None if sample_weight is None else np.asarray(sample_weight)[keep]
    return [items[i] for i in keep], _plain(labels[keep]), weights

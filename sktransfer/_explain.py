"""Explanations of a fitted model's predictions: which pixels and which words drove them.

The attributions come from captum (``pip install sktransfer[explain]``), imported only here, when
explaining. Of the maintained libraries, captum covers both modalities with one interface on any
``nn.Module``: Grad-CAM on a named layer, integrated gradients on the inputs or on a layer's outputs
(the token embeddings, which cannot be differentiated through token ids); pytorch-grad-cam is image-only
and shap's explainers for transformers wrap a pipeline object, not a module with a custom head.

What is attributed is the model's own score of the explained output: the log-probability of a class
(single-label and each output of a multi-output classifier: it rises only when that class gains on the
others), a label's logit (multi-label) or a predicted value (regressors). The methods, measured in
``benchmarks/results/explanations.md`` (deletion test, randomised-head sanity check, cost):

- images, convolutional backbones: ``"gradcam"`` (the default: one forward and backward pass, the last
  feature map of the backbone weighted by the gradients) or ``"integrated_gradients"`` over the pixels;
- images, vision transformers: ``"integrated_gradients"`` (no convolutional feature map to weigh);
- texts: ``"integrated_gradients"`` over the token embeddings, from a baseline whose words are padding
  tokens, or ``"occlusion"`` (the default: each word left out of the text in turn, the score's drop).

Explanations run the PyTorch module on raw inputs, whatever the fitted model caches or compiles
(``features_cached_``, ``runtime_``), in eval mode and without gradients for the weights: the model is
left as it was (weights, modes, ``requires_grad`` flags).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._explanation import Explanation
from ._modes import evaluating

METHODS = {"image": ("auto", "gradcam", "integrated_gradients"), "text": ("auto", "integrated_gradients", "occlusion")}
IG_STEPS = {"image": 16, "text": 20}


def _import_captum():
    try:
        import captum.attr
    except ImportError as err:
        raise ImportError("explain needs captum, which is not installed; run `pip install sktransfer[explain]`.") \
            from err
    return captum.attr


def explain(estimator: Any, X: Any, target: Any = None, *, method: str = "auto") -> Explanation:
    """Explain a fitted classifier's or regressor's predictions: attributions per pixel or per word.

    A :class:`~sklearn.pipeline.Pipeline` is explained through its last step, on what its earlier steps'
    ``transform`` make of ``X``.

    Parameters
    ----------
    estimator : fitted classifier or regressor, or Pipeline ending in one
        A fitted ``PretrainedImageClassifier``, ``PretrainedImageRegressor``, ``PretrainedTextClassifier`` or
        ``PretrainedTextRegressor``.
    X : sequence of inputs
        Images or texts, in any of the forms ``fit`` accepts.
    target : label, int or None, default=None
        What to explain. Classifiers: a class of ``classes_`` (a label of a multi-label model), by
        default each input's predicted class (most probable label); multi-output classifiers: the index
        (or name, from ``output_names_``) of the output whose predicted class is explained, default 0.
        Regressors: the index of the predicted value, default 0.
    method : {"auto", "gradcam", "integrated_gradients", "occlusion"}, default="auto"
        Images: ``"gradcam"`` (convolutional backbones; their default) or ``"integrated_gradients"`` (the
        default for vision transformers). Texts: ``"occlusion"`` (the default) or ``"integrated_gradients"``.

    Returns
    -------
    explanation : Explanation
        One attribution map per image, at the image's own resolution (zero where the centre crop left
        pixels out), or one score per word of each text (words split at whitespace; zero for words past
        ``max_length``). Positive values are evidence for the explained target.
    """
    model, X = _final_step(estimator, X)
    check_is_fitted(model)
    modality = model._modality
    if method not in METHODS[modality]:
        raise ValueError(f"method={method!r} does not explain {modality}s; choose one of {list(METHODS[modality])}.")
    items = _check_modality(model, X)
    picker, describe = target_picker(model, target)
    with untouched(model.net_.module_) as module:
        if modality == "image":
            from ._explain_image import explain_images

            return explain_images(model, module, items, picker, describe, method)
        from ._explain_text import explain_texts

        return explain_texts(model, module, items, picker, describe, method)


def _final_step(estimator: Any, X: Any) -> tuple[Any, Any]:
    from ._embedding import BackboneEstimator
    from ._training import TrainableEstimator

    if isinstance(estimator, Pipeline):
        check_is_fitted(estimator)
        if len(estimator.steps) > 1:
            X = estimator[:-1].transform(X)
        estimator = estimator._final_estimator
    if isinstance(estimator, BackboneEstimator) and not isinstance(estimator, TrainableEstimator):
        raise TypeError(
            f"{type(estimator).__name__} has no prediction to explain: it returns embeddings. Explain a fitted "
            "classifier or regressor (e.g. PretrainedImageClassifier, PretrainedTextRegressor)."
        )
    if not isinstance(estimator, TrainableEstimator):
        name = type(estimator).__name__ if isinstance(estimator, BaseEstimator) else repr(estimator)[:80]
        raise TypeError(
            f"explain needs a fitted sktransfer classifier or regressor, or a Pipeline ending in one; got {name}."
        )
    return estimator, X


def _check_modality(model, X) -> list:
    if isinstance(X, (list, tuple, Iterator)) or getattr(X, "ndim", 0) == 1:  # a sequence of items
        X = list(X)
    first = X[0] if isinstance(X, list) and X else None
    if model._modality == "image" and isinstance(first, str) and not os.path.isfile(first):
        raise ValueError(
            f"{type(model).__name__} explains images, but X holds texts such as {first[:40]!r} (not image files). "
            "Explain texts with a fitted PretrainedTextClassifier or PretrainedTextRegressor."
        )
    return model._check_inputs(X)


def _output_index(model, target, kind: str) -> int:
    names = getattr(model, "output_names_", None)
    if names is not None and not isinstance(target, (int, np.integer)) and target in list(names):
        return list(names).index(target)
    n = len(model.classes_) if kind == "output" else model.n_outputs_
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < n:
        known = f" or a name in output_names_ {list(names)}" if names is not None else ""
        raise ValueError(f"target={target!r} is not an {kind} of this model: pass an index from 0 to {n - 1}{known}.")
    return int(target)


def target_picker(model, target) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[int], Any]]:
    """What to explain: a function from a batch's scores to the explained column of each row, and one
    from a column to what the explanation reports (a class label, or an output index)."""
    if not hasattr(model, "classes_"):  # a regressor
        index = 0 if target is None else _output_index(model, target, "output index")
        return lambda scores: torch.full((len(scores),), index, device=scores.device), int
    if getattr(model, "multioutput_", False):
        k = 0 if target is None else _output_index(model, target, "output")
        start = sum(len(c) for c in model.classes_[:k])
        stop = start + len(model.classes_[k])
        return (lambda scores: scores[:, start:stop].argmax(1) + start,
                lambda column: (model.output_names_[k], model.classes_[k][column - start]))
    if target is None:
        return lambda scores: scores.argmax(1), lambda column: model.classes_[column]
    matches = np.flatnonzero(np.asarray(model.classes_, dtype=object) == target)
    if len(matches) != 1:
        raise ValueError(f"target={target!r} is not in classes_: choose one of {model.classes_.tolist()}.")
    column = int(matches[0])
    return lambda scores: torch.full((len(scores),), column, device=scores.device), lambda c: model.classes_[c]


def scores_of(model, outputs: torch.Tensor) -> torch.Tensor:
    """The attributed scores from the head's outputs: log-probabilities of single-label classes (per output of a
    multi-output classifier), a multi-label model's logits, or a regressor's values on the scale of ``y``."""
    outputs = outputs.float()
    if not hasattr(model, "classes_"):
        return outputs * torch.as_tensor(model.y_scale_, device=outputs.device)
    if getattr(model, "multioutput_", False):
        return torch.cat([part.log_softmax(1) for part in outputs.split(model._sizes(), dim=1)], dim=1)
    return outputs if model.multilabel_ else outputs.log_softmax(1)


def output_values(model, scores: torch.Tensor) -> torch.Tensor:
    """What a score says in the model's terms: a probability, or a predicted value."""
    if not hasattr(model, "classes_"):
        return scores + torch.as_tensor(model.y_mean_, device=scores.device)
    return scores.sigmoid() if getattr(model, "multilabel_", False) else scores.exp()


@contextmanager
def untouched(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The module in eval mode, its weights out of the autograd graph; modes and flags restored afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    with evaluating(module):  # restores the modes after the flags: a module's train() may read its flags
        try:
            for parameter, _ in flags:
                parameter.requires_grad_(False)
            with torch.enable_grad():
                yield module
        finally:
            for parameter, flag in flags:
                parameter.requires_grad_(flag)


def batches(model, n: int) -> Iterator[slice]:
    """Slices of ``batch_size`` inputs, with a progress bar when the model is ``verbose``."""
    from tqdm.auto import tqdm

    starts = range(0, n, model.batch_size)
    for start in tqdm(starts, desc="explain", disable=not model.verbose or len(starts) < 2):
        yield slice(start, min(start + model.batch_size, n))


def result(modality: str, method: str, attributions: list, columns: list, values: list, describe, **data) -> \
        Explanation:
    """The :class:`Explanation` of a run: per input its attribution, explained target and output value."""
    return Explanation(modality=modality, method=method, attributions=attributions,
                       targets=[_plain(describe(int(c))) for c in columns],
                       outputs=np.asarray(values, dtype=np.float64), **data)


def _plain(value: Any) -> Any:
    """A numpy scalar (or a tuple of them) as the Python value it holds."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value

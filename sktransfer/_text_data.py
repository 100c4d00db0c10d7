"""Text input handling: validation, dynamic padding per batch, truncation at ``max_length``."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import torch

_INPUT_HELP = "Pass texts as a list, array or pandas Series of non-empty str."
_IMAGE_HINT = "For images, use PretrainedImageClassifier, PretrainedImageRegressor or PretrainedImageEmbedder."
_VERY_LARGE = 10**6  # transformers' tokenizers say model_max_length=1e30 when they do not know it


def _describe(value: Any) -> str:
    """A short description of a non-text item for error messages (never a whole array's repr)."""
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return f"{reprlib.repr(value)} of type {type(value).__name__}"


def max_positions(model: Any, tokenizer: Any) -> int | None:
    """The most tokens ``model`` (a transformers model) reads in one sequence, or None when nothing says.

    The model's position embeddings (``config.max_position_embeddings``; RoBERTa-like models keep
    ``pad_token_id + 1`` of them for padding) are the hard bound; without them, the tokenizer's
    ``model_max_length`` when it is set.
    """
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        return positions
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _VERY_LARGE:
        return tokenizer_limit
    return None


def check_max_length(max_length: int, model: Any, tokenizer: Any, backbone: Any) -> None:
    """Raise a ValueError when ``max_length`` is beyond what the backbone can read."""
    limit = max_positions(model, tokenizer)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"max_length={max_length} is more than the backbone {str(backbone)!r} can read ({limit} tokens): "
            f"use max_length <= {limit} (longer texts are truncated to max_length tokens)."
        )


def check_texts(X: Any) -> list[str]:
    """Validate text input and return it as a list of str."""
    if isinstance(X, (str, bytes)):
        raise TypeError(f"X must be a collection of texts, not a single {type(X).__name__}. {_INPUT_HELP}")
    if isinstance(X, (AbstractSet, Mapping)):
        raise TypeError(
            f"X is a {type(X).__name__}: its order is not the order of y, so texts and targets would not line up. "
            f"{_INPUT_HELP}"
        )
    if isinstance(X, np.ndarray) and X.ndim != 1:
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        else:
            hint = f" {_IMAGE_HINT}" if X.ndim >= 3 else ""
            raise ValueError(
                f"Text input must be one-dimensional, got an array of shape {X.shape}. {_INPUT_HELP}{hint}"
            )
    if hasattr(X, "ndim") and getattr(X, "ndim", 1) == 2 and hasattr(X, "columns"):
        if X.shape[1] != 1:
            raise ValueError(f"Text input must be one column, got a DataFrame with {X.shape[1]}. {_INPUT_HELP}")
        X = X.iloc[:, 0]
    try:
        texts = list(X)
    except TypeError as err:
        raise TypeError(f"X of type {type(X).__name__} is not a collection of texts. {_INPUT_HELP}") from err
    if not texts:
        raise ValueError("X is empty: fit and predict need at least one text.")
    for i, text in enumerate(texts):
        if isinstance(text, bytes):
            raise TypeError(f"Text {i} is bytes, not str: decode it first, e.g. text.decode('utf-8').")
        if not isinstance(text, str):
            hint = f" {_IMAGE_HINT}" if getattr(text, "ndim", 0) >= 2 else ""
            raise TypeError(f"Text {i} is {_describe(text)}, not str. {_INPUT_HELP}{hint}")
        if not text.strip():
            raise ValueError(f"Text {i} is empty. Remove empty texts or replace them with a placeholder.")
    return texts


class TextDataset(torch.utils.data.Dataset):
    """Raw texts with targets; tokenisation happens per batch in :class:`TextCollator`."""

    def __init__(self, texts: list[str], y=None, sample_weight=None):
        self.texts, self.y, self.sample_weight = texts, y, sample_weight

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int):
        weight = None if self.sample_weight is None else self.sample_weight[i]
        return self.texts[i], weight, (self.y[i] if self.y is not None else 0)


class TextCollator:
    """Tokenise a batch with padding to its longest text, truncated at ``max_length``."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch):
        texts, weights, ys = zip(*batch)
        x = dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt"))
        if weights[0] is not None:
            x["sample_weight"] = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
        return x, torch.as_tensor(np.asarray(ys))

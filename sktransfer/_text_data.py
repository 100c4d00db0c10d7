"""Text input handling: validation, dynamic padding per batch, truncation at ``max_length``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_INPUT_HELP = "Pass texts as a list, array or pandas Series of non-empty str."


def check_texts(X: Any) -> list[str]:
    """Validate text input and return it as a list of str."""
    if isinstance(X, (str, bytes)):
        raise TypeError(f"X must be a collection of texts, not a single {type(X).__name__}. {_INPUT_HELP}")
    if isinstance(X, np.ndarray) and X.ndim != 1:
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        else:
            raise ValueError(f"Text input must be one-dimensional, got an array of shape {X.shape}. {_INPUT_HELP}")
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
            raise TypeError(f"Text {i} is {text!r} of type {type(text).__name__}, not str. {_INPUT_HELP}")
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
        x = dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"))
        if weights[0] is not None:
            x["sample_weight"] = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
        return x, torch.as_tensor(np.asarray(ys))

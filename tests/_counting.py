"""Counting backbone forward passes, in this process and across processes (the parallel-cache test).

Unpickling a :class:`CountingScorer` in a joblib worker imports this module and patches the text
encoder there, so every process appends ``<items>`` lines to the same log file.
"""

from __future__ import annotations

from sktransfer import _bn_folding
from sktransfer._backbones import TextEncoder

_ORIGINAL_FORWARD = TextEncoder.forward
_LOG: list[str] = []


def uncount_fold_checks(monkeypatch, items: list[int]) -> None:
    """Leave out of ``items`` the one-item passes that check a BatchNorm fold: they are not the data's."""
    fold = _bn_folding._fold

    def checked_fold(module, example):
        seen = len(items)
        folded = fold(module, example)
        del items[seen:]
        return folded

    monkeypatch.setattr(_bn_folding, "_fold", checked_fold)


def counting_forward(self, input_ids, attention_mask, token_type_ids=None):
    with open(_LOG[0], "a") as log:
        log.write(f"{input_ids.shape[0]}\n")
    return _ORIGINAL_FORWARD(self, input_ids, attention_mask, token_type_ids)


def install(log_path: str) -> None:
    """Make every text-encoder forward pass in this process append its batch size to ``log_path``."""
    _LOG[:] = [log_path]
    TextEncoder.forward = counting_forward


def counted(log_path: str) -> int:
    """Items the encoders have embedded so far, in all processes."""
    with open(log_path) as log:
        return sum(int(line) for line in log)


class CountingScorer:
    """Accuracy as a GridSearchCV scorer; installs the counter wherever it is unpickled."""

    def __init__(self, log_path: str):
        self.log_path = log_path

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        install(self.log_path)

    def __call__(self, estimator, X, y) -> float:
        return estimator.score(X, y)

"""Counting backbone forward passes across processes (for the parallel-cache test in test_cache.py).

Unpickling a :class:`CountingScorer` in a joblib worker imports this module and patches the text
encoder there, so every process appends ``<items>`` lines to the same log file.
"""

from __future__ import annotations

from sktransfer._backbones import TextEncoder

_ORIGINAL_FORWARD = TextEncoder.forward
_LOG: list[str] = []


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

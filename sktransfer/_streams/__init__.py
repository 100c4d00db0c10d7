"""Training streams: kinds of training rows beyond the labelled ones, each with its loss term (see ``base.py``).

Importing a stream's module registers it; the order below is the order of the loss terms.
"""

from . import contrastive, distillation, domain  # noqa: F401  (registration)
from .base import SAMPLE_DOMAIN, STREAMS, StreamBatch, StreamRows, TrainingStream, register_stream, training_streams

__all__ = ["SAMPLE_DOMAIN", "STREAMS", "StreamBatch", "StreamRows", "TrainingStream", "register_stream",
           "training_streams"]

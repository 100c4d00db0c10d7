"""Contrastive few-shot fine-tuning as a training stream: same-class rows pulled together, others pushed apart.

SetFit's idea (Tunstall et al., 2022): with few labels, first tune the backbone so that the embeddings
of same-class rows are similar and those of different classes are not, then fit a converged linear
head on the tuned embeddings. SetFit materialises sentence pairs (``num_iterations`` per row) and
trains on them one pair at a time; here the pairs are those *within each training batch*, formed
lazily on the batch's features (``B (B - 1) / 2`` pairs for ``B`` rows, nothing stored across batches).
:class:`ClassPairSampler` orders every epoch's rows in same-class pairs, so every row of a batch has a
positive. The term (``Contrastive(loss=...)``) is on the features the head reads (see
:class:`~sktransfer._streams.base.StreamBatch`):

- ``"cosine"``: SetFit's ``CosineSimilarityLoss``, the squared error between each pair's cosine
  similarity and 1 (same class) or 0 (different classes), the two kinds of pair weighted alike;
- ``"supcon"``: the supervised contrastive loss (Khosla et al., 2020) at a temperature;
- ``"triplet"``: the batch-hard triplet loss (Hermans et al., 2017) on cosine distances with a margin.

The classification loss is off while the stream trains (the stream's ``task_weight`` is 0, as in
SetFit's body training); after training, the linear head is solved to convergence on the tuned
embeddings of the training rows (:func:`~sktransfer._converged_head.solve_tuned_head`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Sampler

from .._few_shot import head_is_solved
from .base import StreamBatch, TrainingStream, register_stream


def _row_weights(batch: StreamBatch) -> torch.Tensor:
    weights = torch.ones(len(batch.features), device=batch.features.device) if batch.weights is None else batch.weights
    return weights.float()


def cosine_pair_loss(z: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """SetFit's cosine-similarity loss over the batch's pairs: positive and negative pairs count alike."""
    sim = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(1)
    pair_w = weights[:, None] * weights[None, :]
    terms = []
    for mask, target in ((same & upper, 1.0), (~same & upper, 0.0)):
        w = pair_w[mask]
        if w.sum() > 0:
            terms.append((w * (sim[mask] - target) ** 2).sum() / w.sum())
    return torch.stack(terms).mean() if terms else z.sum() * 0.0


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss: each row's mean log-probability of its positives among the others."""
    z = F.normalize(z, dim=1)
    logits = (z @ z.T) / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = positives.sum(1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return z.sum() * 0.0
    per_row = -(log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / n_pos[anchors])
    w = weights[anchors]
    return (w * per_row).sum() / w.sum().clamp_min(1e-12)


def triplet_loss(z: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss on cosine distances: the farthest positive against the nearest negative."""
    distance = 1.0 - F.normalize(z, dim=1) @ F.normalize(z, dim=1).T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positives, negatives = same & ~eye, ~same
    anchors = positives.any(1) & negatives.any(1)
    if not bool(anchors.any()):
        return z.sum() * 0.0
    hardest_pos = distance.masked_fill(~positives, float("-inf")).amax(1)
    hardest_neg = distance.masked_fill(~negatives, float("inf")).amin(1)
    per_row = F.relu(hardest_pos - hardest_neg + margin)[anchors]
    w = weights[anchors]
    return (w * per_row).sum() / w.sum().clamp_min(1e-12)


class ClassPairSampler(Sampler):
    """Each epoch, the rows in a new random order of same-class pairs, so that a batch of an even number of
    rows gives every row a positive. A class with an odd number of rows pairs its last row with another of
    its rows. ``min_rows``: an epoch lists at least this many rows (more rounds over small data sets), so
    a few-shot fit takes enough steps. Draws from torch's global generator, which the fit seeds."""

    def __init__(self, labels: np.ndarray, min_rows: int = 0):
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        pairs_per_round = sum(math.ceil(len(rows) / 2) for rows in self.by_class)
        self.rounds = max(1, math.ceil(min_rows / (2 * pairs_per_round)))
        self._len = 2 * pairs_per_round * self.rounds

    def __len__(self) -> int:
        return self._len

    def _round(self) -> list[list[int]]:
        pairs = []
        for rows in self.by_class:
            order = rows[torch.randperm(len(rows)).numpy()].tolist()
            if len(order) % 2:
                order.append(order[int(torch.randint(len(order) - 1, ()).item())] if len(order) > 1 else order[0])
            pairs += [order[i:i + 2] for i in range(0, len(order), 2)]
        return pairs

    def __iter__(self):
        pairs = [pair for _ in range(self.rounds) for pair in self._round()]
        return iter([i for j in torch.randperm(len(pairs)).tolist() for i in pairs[j]])


SUPCON_TEMPERATURE = 0.1
TRIPLET_MARGIN = 0.25


class ContrastiveStream(TrainingStream):
    """``contrastive=``: the contrastive term on the training batches. Where the linear head is solved
    after training (``solves_head``), the classification loss is off meanwhile, as in SetFit's body
    training; otherwise (``C=None``, ``head_hidden``, ``label_smoothing``) it trains beside the term."""

    name = "contrastive"

    def __init__(self, loss: str, min_rows: int, solves_head: bool):
        self.loss_name, self.min_rows, self.solves_head = loss, min_rows, solves_head

    def check(self, estimator: Any) -> None:
        if estimator.n_trainable_backbone_params_ == 0 and estimator.unfreeze_every is None:
            raise ValueError(
                "contrastive fine-tuning tunes the backbone's embeddings, but with freeze_layers="
                f"{estimator.freeze_layers!r} no backbone weight trains. Let the top blocks train (e.g. "
                "freeze_layers=-2, or 'none'), use adapter='lora', or set contrastive=None."
            )

    def sampler(self, labels: np.ndarray) -> Sampler:
        return ClassPairSampler(labels, self.min_rows)

    def task_weight(self, batch: StreamBatch) -> float:
        return 0.0 if self.solves_head else 1.0

    def loss(self, batch: StreamBatch) -> torch.Tensor:
        z = batch.features[batch.labelled].float()
        labels = batch.targets[batch.labelled]
        weights = _row_weights(batch)[batch.labelled]
        if self.loss_name == "supcon":
            return supcon_loss(z, labels, weights, SUPCON_TEMPERATURE)
        if self.loss_name == "triplet":
            return triplet_loss(z, labels, weights, TRIPLET_MARGIN)
        return cosine_pair_loss(z, labels, weights)


@register_stream(ContrastiveStream.name)
def _contrastive(estimator: Any) -> ContrastiveStream | None:
    strategy = getattr(estimator, "contrastive_", None)  # chosen at fit (``choose_few_shot``)
    if strategy is None:
        return None
    min_rows = strategy.steps_per_epoch(len(estimator.classes_)) * estimator.batch_size
    return ContrastiveStream(strategy.loss, min_rows, head_is_solved(estimator))

"""The streams' training batches: one dataset of every row they train on, its collate, and the mixing sampler."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import groupby

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from .base import SAMPLE_DOMAIN


class StreamDataset(Dataset):
    """Datasets of the same kind one after the other (labelled rows, then unlabelled rows), each row with its
    domain (>= 0 labelled, < 0 unlabelled) and the streams' per-row data, by batch key."""

    def __init__(self, parts: list[Dataset], domains: np.ndarray, data: dict[str, np.ndarray]):
        self.parts, self.domains, self.data = parts, domains, data
        self.offsets = np.cumsum([0] + [len(part) for part in parts])
        self.y = np.concatenate([part.y for part in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        part = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return part, i - int(self.offsets[part])

    def _row(self, i: int, item) -> tuple:
        return item, int(self.domains[i]), {key: values[i] for key, values in self.data.items()}

    def __getitem__(self, i: int) -> tuple:
        part, j = self._locate(i)
        return self._row(i, self.parts[part][j])

    def __getitems__(self, indices: list[int]) -> list:
        # Runs of rows from one part are fetched together, as that part fetches a batch (e.g. decoding threads).
        items = []
        for part, run in groupby(indices, key=lambda i: self._locate(i)[0]):
            run = list(run)
            local = [i - int(self.offsets[part]) for i in run]
            fetch = getattr(self.parts[part], "__getitems__", None)
            fetched = fetch(local) if fetch is not None else [self.parts[part][j] for j in local]
            items += [self._row(i, item) for i, item in zip(run, fetched)]
        return items


class StreamCollate:
    """The inputs' own collate (default: torch's), plus each row's domain and the streams' data in the batch dict."""

    def __init__(self, collate: Callable | None):
        self.collate = collate

    def __call__(self, batch: list) -> tuple[dict, torch.Tensor]:
        inputs, domains, data = zip(*batch)
        x, y = (self.collate or default_collate)(list(inputs))
        x = {**x, SAMPLE_DOMAIN: torch.as_tensor(domains)}
        for key in data[0]:
            x[key] = torch.as_tensor(np.stack([row[key] for row in data]))
        return x, y


class SourceTargetSampler(Sampler):
    """Labelled (source) and unlabelled (target) rows in turns (s, t, s, t ...): any run of ``2 k`` rows holds
    ``k`` of each.

    Each epoch visits every source row once, in a new random order, and as many target rows, drawn
    without replacement and cycling when there are fewer target rows than source rows. It draws from
    torch's global generator, which the fit seeds.
    """

    def __init__(self, n_source: int, n_target: int):
        self.n_source, self.n_target = n_source, n_target

    def __len__(self) -> int:
        return 2 * self.n_source

    def __iter__(self):
        source = torch.randperm(self.n_source)
        rounds = math.ceil(self.n_source / self.n_target)
        target = torch.cat([torch.randperm(self.n_target) for _ in range(rounds)])[: self.n_source]
        return iter(torch.stack([source, target + self.n_source], dim=1).flatten().tolist())

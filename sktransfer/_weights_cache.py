"""Pretrained backbones kept in memory, so that a grid search reads each one from disk once per process.

The first request for a backbone loads it and keeps that copy as a template; every request, the first
included, gets its own deep copy. Fits therefore always start from the pristine pretrained weights: a
fit that trains (or moves, or converts) its copy never touches the template. Only what a stable name
identifies is kept: packaged, timm, torchvision and Hugging Face weights, and local directories keyed
on their files' sizes and modification times (an edited checkpoint is loaded anew). Random
initialisations and a user's own modules are never kept. The store is process-wide, bounded by
``max_bytes`` of parameters and buffers (least recently used first out), and :meth:`BackboneCache.clear`
empties it. Parallel workers are separate processes (joblib's loky, dask), each with its own store.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from collections import OrderedDict
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")


def nbytes(obj: Any) -> int:
    """Bytes held by the parameters and buffers of the modules in ``obj``: a module, or a tuple, list or
    dataclass holding modules (anything else counts as nothing)."""
    if isinstance(obj, torch.nn.Module):
        tensors = [*obj.parameters(), *obj.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)
    if isinstance(obj, (tuple, list)):
        return sum(nbytes(item) for item in obj)
    if dataclasses.is_dataclass(obj):
        return sum(nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


def directory_key(path: str | os.PathLike) -> str:
    """A key for a local model directory that changes whenever one of its files does."""
    path = os.path.abspath(path)
    stats = []
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            stat = os.stat(os.path.join(root, name))
            stats.append(f"{os.path.relpath(os.path.join(root, name), path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return f"dir:{path}:{'|'.join(stats)}"


class BackboneCache:
    """Bounded, thread-safe store of loaded backbones that hands out deep copies.

    Attributes
    ----------
    max_bytes : int
        Upper bound on the parameter and buffer bytes of the templates kept; the least recently used
        go first. A backbone larger than this is loaded every time, never kept.
    loads : int
        How many times a loader ran (misses), for diagnostics and tests.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes
        self.loads = 0
        self.nbytes = 0
        self._store: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def clear(self) -> None:
        """Forget every kept backbone (the next request of each loads it from disk again)."""
        with self._lock:
            self._store.clear()
            self.nbytes = 0

    def get(self, key: str | None, load: Callable[[], T]) -> T:
        """A private copy of the backbone ``key``, from ``load()`` on the first request only.

        Parameters
        ----------
        key : str or None
            What identifies the weights; None (a random initialisation, a user's module) loads
            every time and keeps nothing.
        load : callable
            Builds the backbone (reads its weights); called at most once per key while it is kept,
            even when several threads ask at once.

        Returns
        -------
        backbone
            A deep copy of the template: changing it never changes what later requests get.
        """
        if key is None:
            return load()
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            template = self._lookup(key)
            if template is None:
                template = load()
                with self._lock:
                    self.loads += 1
                    if not self._keep(key, template):
                        return template  # too large to keep: nobody else will see this one
        return copy.deepcopy(template)

    def _lookup(self, key: str) -> Any:
        with self._lock:
            entry = self._store.get(key)
            if entry is None:
                return None
            self._store.move_to_end(key)
            return entry[0]

    def _keep(self, key: str, template: Any) -> bool:
        """Store ``template`` (evicting the least recently used); False when it is larger than the bound."""
        size = nbytes(template)
        if size > self.max_bytes:
            return False
        self._store[key] = (template, size)
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, (_, old) = self._store.popitem(last=False)
            self.nbytes -= old
        return True


backbone_cache = BackboneCache()

"""The frozen-feature cache: embeddings computed once, reused across epochs, folds and grid points.

Each embedding is keyed on an :class:`EmbeddingKey`, the record of everything besides the input that
changes it (the backbone's weights, the pooling, the preprocessing, the precision, a frozen prefix's
boundary, a test-time view), and on the content of its input: path, size and modification time for a file, a hash for
an array, an image or a string. A changed input therefore gets a new key and is never served stale features.
The in-memory store is process-wide, bounded and least-recently-used; with ``cache_dir`` the
embeddings also go to disk, one ``.npy`` file each, so parallel workers share them; a lock file
there makes workers that miss the same items at once compute them once (the second waits, then reads).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections import OrderedDict
from dataclasses import astuple, dataclass
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image


def fingerprint(item: Any) -> str:
    """A string that changes whenever the item's content does."""
    if isinstance(item, (str, os.PathLike)):
        stat = os.stat(item)
        return f"file:{os.path.abspath(item)}:{stat.st_size}:{stat.st_mtime_ns}"
    if isinstance(item, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(item).tobytes(), digest_size=16).hexdigest()
        return f"array:{item.shape}:{item.dtype}:{digest}"
    if isinstance(item, Image.Image):
        digest = hashlib.blake2b(item.tobytes(), digest_size=16).hexdigest()
        return f"pil:{item.mode}:{item.size}:{digest}"
    raise TypeError(f"cannot fingerprint {type(item).__name__}")


def text_fingerprint(text: str) -> str:
    """A text's content hash (a text is never read as a path)."""
    return "text:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True, kw_only=True)
class EmbeddingKey:
    """Everything besides the input that changes an embedding; equal keys give equal embeddings.

    Parameters
    ----------
    backbone : str
        The identity of the backbone's weights (``backbone_identity_``): name, pretrained or not,
        ``keep_blocks``, a fitted model's weights, int8 quantisation.
    preprocessing : str
        How an input becomes the backbone's input: an image model's data config, a text model's
        ``max_length``.
    precision : str
        The resolved precision the backbone runs in.
    pooling : str or None, default=None
        How a text model's token states become one vector; None where the encoder pools itself.
    prefix_boundary : str or None, default=None
        The module a frozen prefix stops at, whose outputs are stored instead of the pooled features.
    view : str or None, default=None
        The test-time augmentation view taken of each image before its preprocessing (``tta``); None: the
        image itself.
    """

    backbone: str
    preprocessing: str
    precision: str
    pooling: str | None = None
    prefix_boundary: str | None = None
    view: str | None = None

    def namespace(self) -> str:
        """The string all the items' cache keys under this record start from."""
        return repr(astuple(self))


def weights_identity(identity: str, *, named: bool) -> str:
    """``identity`` when it names the weights, else made unique: weights no name stands for never share embeddings."""
    return identity if named else f"{identity}:{uuid.uuid4().hex}"


def feature_keys(items: list, key: EmbeddingKey, item_fingerprint: Callable[[Any], str] = fingerprint) -> list[str]:
    """One cache key per item under ``key``."""
    prefix = key.namespace().encode("utf-8") + b"|"
    return [hashlib.blake2b(prefix + item_fingerprint(item).encode("utf-8"), digest_size=20).hexdigest()
            for item in items]


class FeatureCache:
    """Bounded in-memory LRU store of embeddings, with an optional shared directory on disk.

    ``sktransfer.feature_cache`` is the process-wide instance the estimators use; ``len()`` gives the
    number of embeddings held in memory.

    Parameters
    ----------
    max_bytes : int, default=2 * 1024**3
        Upper bound on the memory the stored embeddings take.

    Attributes
    ----------
    max_bytes : int
        Upper bound on the memory the stored embeddings take; the least recently used go first. It
        may be changed at any time (it applies from the next store).
    nbytes : int
        Memory the embeddings held take now.

    See Also
    --------
    PretrainedImageClassifier : Its ``cache`` and ``cache_dir`` parameters, as every estimator's, control
        the use of ``feature_cache``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer._cache import FeatureCache
    >>> cache = FeatureCache(max_bytes=1024)
    >>> embed = lambda positions: np.ones((len(positions), 4))
    >>> cache.get_or_compute(["key-a", "key-b"], embed).shape
    (2, 4)
    >>> len(cache), cache.nbytes
    (2, 32)
    """

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes
        self._store: OrderedDict[str, np.ndarray] = OrderedDict()
        self.nbytes = 0

    def clear(self) -> None:
        """Forget every embedding held in memory."""
        self._store.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._store)

    def get(self, keys: list[str], cache_dir: str | None = None) -> dict[int, np.ndarray]:
        """Return the embeddings of the keys found in memory or in ``cache_dir``.

        Parameters
        ----------
        keys : list of str
            Cache keys, one per item.
        cache_dir : str or None, default=None
            Directory also searched, where embeddings found are read into memory.

        Returns
        -------
        dict of int to ndarray
            ``{position in keys: embedding}`` for the keys found.
        """
        found = {}
        for i, key in enumerate(keys):
            value = self._store.get(key)
            if value is not None:
                self._store.move_to_end(key)
            elif cache_dir is not None:
                path = os.path.join(cache_dir, key[:2], key + ".npy")
                if os.path.exists(path):
                    value = np.load(path)
                    self._put(key, value)
            if value is not None:
                found[i] = value
        return found

    def get_or_compute(
        self, keys: list[str], compute: Callable[[list[int]], np.ndarray], cache_dir: str | None = None
    ) -> np.ndarray:
        """Return the embeddings of all ``keys``, computing and storing those found nowhere.

        With ``cache_dir``, the misses are looked up again and computed under a lock shared by every
        process using that directory, so concurrent workers never compute the same embedding twice.

        Parameters
        ----------
        keys : list of str
            Cache keys, one per item.
        compute : callable
            ``compute(positions)`` returns the embeddings of the items at those positions of ``keys``,
            as an array with one row per position.
        cache_dir : str or None, default=None
            Directory shared with other processes, searched and written besides memory.

        Returns
        -------
        ndarray of shape (len(keys), n_features)
            The embeddings as float32, in the order of ``keys``.
        """
        found = self.get(keys, cache_dir)
        if len(found) < len(keys):
            with _locked(cache_dir):
                if cache_dir is not None:
                    missing = [i for i in range(len(keys)) if i not in found]
                    found.update((missing[j], v) for j, v in self.get([keys[i] for i in missing], cache_dir).items())
                missing = [i for i in range(len(keys)) if i not in found]
                if missing:
                    computed = compute(missing)
                    self.put([keys[i] for i in missing], computed, cache_dir)
                    found.update(zip(missing, computed))
        return np.stack([found[i] for i in range(len(keys))]).astype(np.float32, copy=False)

    def put(self, keys: list[str], values: np.ndarray, cache_dir: str | None = None) -> None:
        """Store one embedding per key, in memory and (atomically) in ``cache_dir``.

        Parameters
        ----------
        keys : list of str
            Cache keys, one per embedding.
        values : ndarray of shape (len(keys), n_features)
            The embeddings, stored as float32.
        cache_dir : str or None, default=None
            Directory to write them to as well, one ``.npy`` file each.
        """
        for key, value in zip(keys, values):
            value = np.array(value, dtype=np.float32)
            self._put(key, value)
            if cache_dir is not None:
                folder = os.path.join(cache_dir, key[:2])
                os.makedirs(folder, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
                with os.fdopen(fd, "wb") as handle:
                    np.save(handle, value)
                os.replace(tmp, os.path.join(folder, key + ".npy"))

    def _put(self, key: str, value: np.ndarray) -> None:
        if key in self._store:
            return
        self._store[key] = value
        self.nbytes += value.nbytes
        while self.nbytes > self.max_bytes and self._store:
            _, old = self._store.popitem(last=False)
            self.nbytes -= old.nbytes


@contextlib.contextmanager
def _locked(cache_dir: str | None) -> Iterator[None]:
    """An exclusive lock on ``cache_dir`` across processes (none without a directory, or without fcntl)."""
    try:
        import fcntl
    except ImportError:  # Windows: workers may then compute an embedding twice, never a wrong one
        fcntl = None
    if cache_dir is None or fcntl is None:
        yield
        return
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


feature_cache = FeatureCache()

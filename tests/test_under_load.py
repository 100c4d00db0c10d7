"""Under load: predicting on thousands of files streams with bounded memory; threads agree with one thread."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import torch

from conftest import write_png_files
from sktransfer import PretrainedImageClassifier

N_FILES = 2000
RSS_BOUND_MB = 300


@pytest.fixture
def fitted(image_data):
    """A classifier on a one-layer conv backbone: the test measures streaming, not the network."""
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    clf = PretrainedImageClassifier(backbone=backbone, batch_size=100, cache=False, max_epochs=2, random_state=0)
    return clf.fit(*image_data)


def _peak_rss_growth_mb(fn) -> tuple[float, object]:
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    return (max(peak, process.memory_info().rss) - baseline) / 2**20, result


def test_predict_streams_thousands_of_files(tmp_path, fitted):
    paths = write_png_files(tmp_path, N_FILES, 16)
    fitted.predict(paths[:10])  # warm-up, so that one-off allocations do not count as growth
    growth, pred = _peak_rss_growth_mb(lambda: fitted.predict(paths))
    assert pred.shape == (N_FILES,) and set(pred) <= set(fitted.classes_)
    # Preprocessed to 3x224x224 float32, all 2,000 images would take 1.2 GB at once.
    assert growth < RSS_BOUND_MB, f"peak RSS grew by {growth:.0f} MB"


def test_predict_from_threads_matches_one_thread(fitted):
    X = np.random.default_rng(1).integers(0, 255, size=(24, 24, 24, 3), dtype=np.uint8)
    chunks = [X[i : i + 6] for i in range(0, len(X), 6)]
    expected = [fitted.predict_proba(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            got = list(pool.map(fitted.predict_proba, chunks))
            for e, g in zip(expected, got):
                np.testing.assert_allclose(g, e, atol=1e-6)

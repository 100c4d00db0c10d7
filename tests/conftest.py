"""Shared fixtures: tiny, randomly initialised backbones built locally (no download) and tiny data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

WORDS = (
    "good great fine nice love wonderful excellent happy bad awful terrible boring hate sad poor worst "
    "the a an is was and or film movie plot acting story very not it this that"
).split()

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """A 2-layer BERT with a 50-word vocabulary, saved with save_pretrained (model and tokenizer)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def save_tiny_bert(path) -> str:
    """Save the tiny BERT of ``tiny_bert_dir`` into the folder ``path``; return it as a string."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def text_data():
    """A separable toy sentiment set: 24 texts, string labels."""
    pos = ["good film", "great acting", "wonderful story", "excellent movie", "nice plot", "love it"]
    neg = ["bad film", "awful acting", "boring story", "terrible movie", "poor plot", "hate it"]
    X = (pos + neg) * 2
    y = ["pos"] * 6 + ["neg"] * 6
    return X, y * 2


@pytest.fixture(scope="session")
def image_data():
    """16 small RGB uint8 images in two classes told apart by brightness."""
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 80, size=(8, 32, 32, 3), dtype=np.uint8)
    light = rng.integers(170, 255, size=(8, 32, 32, 3), dtype=np.uint8)
    X = np.concatenate([dark, light])
    y = np.array(["dark"] * 8 + ["light"] * 8)
    return X, y


@pytest.fixture
def tiny_image_params() -> dict:
    """Constructor arguments for a fast image estimator on timm's tiny test model."""
    return {"backbone": "test_efficientnet", "pretrained": False, "max_epochs": 2, "random_state": 0}


@pytest.fixture
def tiny_text_params(tiny_bert_dir) -> dict:
    """Constructor arguments for a fast text estimator on the tiny local BERT."""
    return {"backbone": tiny_bert_dir, "max_epochs": 2, "random_state": 0, "max_length": 16}


def force_raw_stage(monkeypatch) -> None:
    """Make fits that run every input through the whole backbone at every step (nothing precomputed): the
    reference that precomputed embeddings and frozen-prefix outputs must reproduce."""
    from sktransfer._plan import Stage
    from sktransfer._planner import FitPlanner

    monkeypatch.setattr(FitPlanner, "_stage", lambda self, encoder, trainable, items: (Stage.RAW, None))


# scikit-learn checks that need no tabular data, run on every estimator family.
SKLEARN_API_CHECKS = [
    "check_estimator_cloneable",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_parameters_default_constructible",
    "check_estimator_repr",
]


def write_png_files(folder, n: int, size: int) -> list[str]:
    """Write ``n`` random RGB PNG files of ``size`` x ``size`` pixels into ``folder``; return their paths."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def requires_shared_data(*parts: str):
    """Skip unless ../shared/data/<parts> exists; under CI=true (as .ci/run sets it), fail instead: CI must run
    the real-data tests, never pass by skipping them."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists() and os.environ.get("CI", "").lower() in ("true", "1"):
        return pytest.mark.shared_data_absent(path)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent")


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data_absent(path): real data CI needs and lacks (requires_shared_data)")


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("shared_data_absent")
    if marker is not None:
        pytest.fail(f"CI=true, and {marker.args[0]} is absent: CI runs the real-data tests, so check the shared data "
                    "out beside the repository (../shared/data, see its README.md), or unset CI to skip them.",
                    pytrace=False)

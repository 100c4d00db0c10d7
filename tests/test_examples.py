"""The shipped sentiment sample, and the quickstart's pieces on tiny models (the full run is in .ci/run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, load_sentiment_sample

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sentiment_sample_is_balanced_clean_text():
    texts, labels = load_sentiment_sample()
    assert len(texts) == len(labels) == 200
    assert labels.count("positive") == labels.count("negative") == 100
    assert len(set(texts)) == 200
    assert all(text == text.strip() and len(text.split()) >= 3 and "\t" not in text for text in texts)


def test_quickstart_digits_fallback_trains_and_reports(tmp_path, capsys):
    quickstart = _load_example("quickstart")
    X_train, X_test, y_train, y_test, description = quickstart.image_data(tmp_path / "absent", n_digits=100)
    assert "digits" in description
    assert X_train.dtype == np.uint8 and X_train.shape[1:] == (8, 8) and X_train.max() > 200
    assert len(X_train) + len(X_test) == 100
    clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, max_epochs=2, random_state=0)
    accuracy = quickstart.evaluate(clf, X_train, X_test, y_train, y_test, description)
    # Ten classes (chance 0.1, 30 test images): even a random tiny backbone's features separate the digits.
    assert accuracy >= 0.4
    assert accuracy == clf.score(X_test, y_test)
    out = capsys.readouterr().out
    assert "test accuracy" in out and "macro avg" in out


def test_quickstart_text_split_learns_with_the_default_backbone(capsys):
    # The packaged all-MiniLM-L6-v2, as the quickstart uses it (about a second): a tiny random BERT cannot
    # tell these review sentences apart, so it could not show that the quickstart's recipe learns.
    quickstart = _load_example("quickstart")
    X_train, X_test, y_train, y_test, _ = quickstart.text_data()
    assert (len(X_train), len(X_test)) == (140, 60)
    assert y_test.count("positive") == y_test.count("negative") == 30
    clf = PretrainedTextClassifier(random_state=0)
    accuracy = quickstart.evaluate(clf, X_train, X_test, y_train, y_test, "sample")
    assert accuracy >= 0.75  # chance 0.5; measured 0.88
    assert accuracy == clf.score(X_test, y_test)
    assert "negative" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["image_gridsearch", "text_pipeline"])
def test_data_examples_exit_clearly_without_shared_data(name, tmp_path):
    with pytest.raises(SystemExit, match="is absent"):
        _load_example(name).main(tmp_path)

"""The defaults on real data (slower; skipped when ../shared/data is absent)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import SHARED_DATA, requires_shared_data
from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, load_image_folder


def _read_sst2(name: str) -> tuple[list[str], np.ndarray]:
    with open(SHARED_DATA / "sst2" / name, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"] for row in rows], np.asarray([int(row["label"]) for row in rows])


@pytest.mark.slow
@requires_shared_data("hymenoptera", "train")
def test_default_image_classifier_on_hymenoptera():
    X_train, y_train = load_image_folder(SHARED_DATA / "hymenoptera" / "train")
    X_val, y_val = load_image_folder(SHARED_DATA / "hymenoptera" / "val")
    clf = PretrainedImageClassifier(freeze_layers="all", random_state=0).fit(X_train, y_train)
    assert clf.classes_.tolist() == ["ants", "bees"]
    assert clf.score(X_val, y_val) >= 0.90


@pytest.mark.slow
@requires_shared_data("sst2", "test.tsv")
def test_default_text_classifier_on_sst2():
    X, y = _read_sst2("train.tsv")
    rows = np.random.default_rng(0).choice(len(X), size=2000, replace=False)
    X_test, y_test = _read_sst2("test.tsv")
    clf = PretrainedTextClassifier(random_state=0).fit([X[i] for i in rows], y[rows])
    assert clf.score(X_test, y_test) >= 0.75

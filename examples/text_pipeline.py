"""Sentiment classification on SST-2 with the embedded all-MiniLM-L6-v2 backbone, two ways.

1. A scikit-learn Pipeline: ``PretrainedTextEmbedder`` (frozen sentence embeddings) followed by
   ``LogisticRegression``.
2. ``PretrainedTextClassifier``: the same frozen backbone with a head trained by skorch.

Both read the same embeddings: the second reuses the feature cache the first filled. Trains on a
stratified subsample of ``train.tsv`` and reports on ``test.tsv``. Needs ``../shared/data/sst2``
beside the repository. Run it with ``python examples/text_pipeline.py [n_train]``.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedTextClassifier, PretrainedTextEmbedder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LABELS = {"0": "negative", "1": "positive"}


def read_sst2(path: Path) -> tuple[list[str], list[str]]:
    """Sentences and their labels ("negative"/"positive") from an SST-2 ``sentence<TAB>label`` file."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"].strip() for row in rows], [LABELS[row["label"]] for row in rows]


def report(name: str, model, X_train, y_train, X_test, y_test) -> None:
    start = time.perf_counter()
    model.fit(X_train, y_train)
    y_pred = model.predict(X_test)
    print(f"\n=== {name} (fit + predict: {time.perf_counter() - start:.1f} s)")
    print(classification_report(y_test, y_pred, digits=3))


def main(data: Path = DATA, n_train: int = 2000) -> None:
    root = data / "sst2"
    if not root.is_dir():
        sys.exit(f"text_pipeline: {root} is absent; put SST-2 there (train.tsv and test.tsv with a "
                 "'sentence<TAB>label' header) to run this example.")
    texts, labels = read_sst2(root / "train.tsv")
    X_train, _, y_train, _ = train_test_split(texts, labels, train_size=n_train, stratify=labels, random_state=0)
    X_test, y_test = read_sst2(root / "test.tsv")
    print(f"SST-2: {len(X_train)} training sentences (of {len(texts)}), {len(X_test)} test sentences")
    embed_then_logreg = make_pipeline(PretrainedTextEmbedder(), LogisticRegression(max_iter=1000))
    report("Pipeline(PretrainedTextEmbedder, LogisticRegression)", embed_then_logreg, X_train, y_train, X_test, y_test)
    classifier = PretrainedTextClassifier(max_epochs=20, random_state=0)
    report("PretrainedTextClassifier (frozen backbone, cached embeddings)", classifier,
           X_train, y_train, X_test, y_test)


if __name__ == "__main__":
    main(n_train=int(sys.argv[1]) if len(sys.argv) > 1 else 2000)

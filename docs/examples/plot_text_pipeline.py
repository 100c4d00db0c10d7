"""
Sentiment of movie reviews: an embedder in a Pipeline, and a classifier
=======================================================================

Two ways to classify texts with a frozen pretrained transformer (the packaged all-MiniLM-L6-v2), on a
sample of 1,000 SST-2 training phrases, scored on the 872 SST-2 test sentences: a scikit-learn
``Pipeline`` of :class:`~sktransfer.PretrainedTextEmbedder` and ``LogisticRegression``, and
:class:`~sktransfer.PretrainedTextClassifier` with its defaults. Both read the same cached
embeddings (:data:`~sktransfer.feature_cache`), so the second costs almost nothing once the first
has embedded the texts. A TF-IDF pipeline is the classic baseline.
"""

# %%
# Load a sample of SST-2
# ----------------------
import csv
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedTextClassifier, PretrainedTextEmbedder

# The shared data sets sit beside the repository; the gallery runs from docs/examples/.
DATA = Path(os.environ.get("SKTRANSFER_DATA", "../../../shared/data"))


def read_tsv(path):
    """Sentences and 0/1 labels of an SST-2 file (header ``sentence<TAB>label``)."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
    return np.array([row["sentence"] for row in rows], dtype=object), np.array([int(row["label"]) for row in rows])


texts, labels = read_tsv(DATA / "sst2" / "train.tsv")
sample = np.random.default_rng(0).choice(len(texts), size=1000, replace=False)
X_train, y_train = texts[sample], labels[sample]
X_test, y_test = read_tsv(DATA / "sst2" / "test.tsv")
print(f"{len(X_train)} training phrases, {len(X_test)} test sentences; share positive {y_train.mean():.2f}")

# %%
# Three models
# ------------
# The embedder is a transformer (``fit`` does no training; ``transform`` returns 384 mean-pooled
# features per text), so it drops into a ``Pipeline`` in front of any scikit-learn estimator.
models = {
    "TF-IDF + LogisticRegression": make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000)
    ),
    "PretrainedTextEmbedder + LogisticRegression": make_pipeline(
        PretrainedTextEmbedder(), LogisticRegression(max_iter=1000)
    ),
    "PretrainedTextClassifier()": PretrainedTextClassifier(random_state=0),
}
accuracy, seconds = {}, {}
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train, y_train)
    accuracy[name] = accuracy_score(y_test, model.predict(X_test))
    seconds[name] = time.perf_counter() - start
    print(f"{name:45s} accuracy {accuracy[name]:.3f}  fit + predict {seconds[name]:5.1f} s")

# %%
# The classifier's prediction for a few new sentences, with its probability of "positive":
new = ["A gripping, beautifully acted film.", "Two hours I will never get back.", "It was fine, I guess."]
for text, p in zip(new, models["PretrainedTextClassifier()"].predict_proba(new)[:, 1]):
    print(f"{p:.2f}  {text}")

# %%
# Accuracy on the test sentences
# ------------------------------
fig, ax = plt.subplots(figsize=(7, 2.6))
names = list(accuracy)
ax.barh(names, [accuracy[name] for name in names], color=["grey", "tab:blue", "tab:orange"])
for y, name in enumerate(names):
    ax.text(accuracy[name] + 0.005, y, f"{accuracy[name]:.1%}", va="center")
ax.set_xlim(0.5, 0.9)
ax.set_xlabel("SST-2 test accuracy (1,000 training phrases)")
ax.invert_yaxis()
fig.tight_layout()

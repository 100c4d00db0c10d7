"""Unlabelled rows: self-training inside one fit against labels alone and scikit-learn's SelfTrainingClassifier.

Each draw takes some labelled rows from a set's pool (seeded) and a fixed seeded sample of the other pool
rows as unlabelled rows (their labels masked with -1 or None); every arm trains on the same draw and is
scored on the same test rows, in the same run (the packaged MiniLM and EfficientNet-Lite0, frozen):

- ``labels alone``: ``Pretrained*Classifier(contrastive=None)`` on the labelled rows (the converged head);
- ``LogisticRegression, labels alone``: ``make_pipeline(Pretrained*Embedder(), LogisticRegression())``;
- ``SelfTrainingClassifier``: ``make_pipeline(Pretrained*Embedder(), SelfTrainingClassifier(LogisticRegression()))``
  on every row (scikit-learn's defaults: threshold 0.75, up to 10 refits);
- ``sktransfer self-training``: ``Pretrained*Classifier(contrastive=None, semi_supervised="self_training")``;
- ``labels alone, epochs`` and ``sktransfer pseudo-label stream``: the same with ``C=None`` (the head trained
  by epochs, the unlabelled rows by the pseudo-label stream).

Sets: SST-2 with 100 / 200 / 1,000 labels (4,000 unlabelled phrases, the 872 test sentences), TREC with 8
and 32 labels per class (3,000 unlabelled questions; 500 test), hymenoptera with 20 and 60 labels (the rest
of its train folder unlabelled; val as test) and Office-31 amazon with 3 per class (the rest of a 1,800-image
pool unlabelled; 500 test). Embeddings are cached within the run (the feature cache), as a user's repeated
fits on one set would be: fit times are those of the heads on cached embeddings.
Run with ``python -m benchmarks.semi_supervised [--full]`` (quick: TREC at 8 per class, 1 draw, 500 unlabelled).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ._harness import SHARED_DATA, headline, markdown_table, write_result
from .few_shot import _measure, draw, load_set

# (set, labels, per class?): labels are per class where per_class, else in all (stratified by class shares).
SETTINGS = {
    "full": dict(cases=[("sst2", 100, False), ("sst2", 200, False), ("sst2", 1000, False), ("trec", 8, True),
                        ("trec", 32, True), ("hymenoptera", 20, False), ("hymenoptera", 60, False),
                        ("office31_amazon", 3, True)],
                 draws=3, unlabelled={"sst2": 4000, "trec": 3000}, test=872),
    "quick": dict(cases=[("trec", 8, True)], draws=1, unlabelled={"trec": 500}, test=200),
}
MODALITY = {"sst2": "text", "trec": "text", "hymenoptera": "image", "office31_amazon": "image"}


def _arms(modality: str) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.semi_supervised import SelfTrainingClassifier

    from sktransfer import (
        PretrainedImageClassifier,
        PretrainedImageEmbedder,
        PretrainedTextClassifier,
        PretrainedTextEmbedder,
    )

    clf, emb = ((PretrainedTextClassifier, PretrainedTextEmbedder) if modality == "text"
                else (PretrainedImageClassifier, PretrainedImageEmbedder))
    return {
        "labels alone": (False, lambda s: clf(contrastive=None, random_state=s)),
        "LogisticRegression, labels alone": (False, lambda s: make_pipeline(emb(), LogisticRegression(max_iter=1000))),
        "SelfTrainingClassifier": (True, lambda s: make_pipeline(
            emb(), SelfTrainingClassifier(LogisticRegression(max_iter=1000)))),
        "sktransfer self-training": (True, lambda s: clf(contrastive=None, semi_supervised="self_training",
                                                         random_state=s)),
        "labels alone, epochs": (False, lambda s: clf(contrastive=None, C=None, random_state=s)),
        "sktransfer pseudo-label stream": (True, lambda s: clf(contrastive=None, C=None,
                                                               semi_supervised="self_training", random_state=s)),
    }


def _labelled(y: np.ndarray, n: int, per_class: bool, seed: int) -> np.ndarray:
    """``n`` rows of each class (``per_class``: few_shot's ``draw``) or ``n`` rows in all, each class its share
    (at least 2), seeded."""
    if per_class:
        return draw(y, n, seed)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), max(2, round(n * m / len(y))), replace=False)
                           for c, m in zip(classes, counts)])


def _warm_up(name: str, items: list) -> None:
    """Load the backbone and fill the feature cache with every row the draws use: fit times are the heads'."""
    from sktransfer import PretrainedImageEmbedder, PretrainedTextEmbedder

    embedder = PretrainedTextEmbedder() if MODALITY[name] == "text" else PretrainedImageEmbedder()
    embedder.fit(items[:1]).transform(items)


def measure(setting: dict) -> list[dict]:
    results = []
    for name, n, per_class in setting["cases"]:
        X_pool, y_pool, X_test, y_test = load_set(name)
        # Integer codes, -1 unlabelled: the convention SelfTrainingClassifier and sktransfer share.
        classes, y_pool = np.unique(np.asarray(y_pool).astype(str), return_inverse=True)
        keep = np.sort(np.random.default_rng(0).permutation(len(X_test))[:setting["test"]])
        X_test, y_test = [X_test[i] for i in keep], np.searchsorted(classes, np.asarray(y_test).astype(str)[keep])
        draws = []
        for d in range(setting["draws"]):
            rows = _labelled(y_pool, n, per_class, seed=d)
            rest = np.setdiff1d(np.arange(len(y_pool)), rows)
            size = setting["unlabelled"].get(name, len(rest))
            draws.append((rows, np.sort(np.random.default_rng(100 + d).permutation(rest)[:size])))
        _warm_up(name, [X_pool[i] for i in np.unique(np.concatenate([np.r_[r, o] for r, o in draws]))] + X_test)
        for d, (rows, others) in enumerate(draws):
            X_lab, y_lab = [X_pool[i] for i in rows], y_pool[rows]
            X_all = X_lab + [X_pool[i] for i in others]
            y_all = np.concatenate([y_lab, np.full(len(others), -1)])
            for arm, (semi, make) in _arms(MODALITY[name]).items():
                result = {"set": name, "labels": f"{n}{' per class' if per_class else ''}", "draw": d, "arm": arm,
                          "n_labelled": len(rows), "n_unlabelled": len(others),
                          **(_measure(make, d, X_all, y_all, X_test, y_test) if semi
                             else _measure(make, d, X_lab, y_lab, X_test, y_test))}
                print(f"[semi_supervised] {name} {result['labels']} draw {d} {arm}: "
                      f"{100 * result['accuracy']:.1f} % (fit {result['fit_s']:.1f} s)", file=sys.stderr, flush=True)
                results.append(result)
    return results


def summarise(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (set, labels, arm): accuracy mean ± std and fit time; and per case each arm's gain over labels alone."""
    import pandas as pd

    frame = pd.DataFrame(results)
    rows, gains = [], []
    for (name, labels, arm), group in frame.groupby(["set", "labels", "arm"], sort=False):
        rows.append({"set": name, "labels": labels, "arm": arm, "draws": len(group),
                     "unlabelled": int(group.n_unlabelled.iloc[0]),
                     "accuracy %": f"{100 * group.accuracy.mean():.1f} ± {100 * group.accuracy.std(ddof=0):.1f}",
                     "fit s": round(float(group.fit_s.mean()), 2)})
    for (name, labels), group in frame.groupby(["set", "labels"], sort=False):
        acc = group.groupby("arm").accuracy.mean()
        gains.append({"set": name, "labels": labels,
                      "self-training - labels alone (points)": round(100 * (acc["sktransfer self-training"]
                                                                            - acc["labels alone"]), 1),
                      "self-training - SelfTrainingClassifier": round(100 * (acc["sktransfer self-training"]
                                                                             - acc["SelfTrainingClassifier"]), 1),
                      "stream - labels alone, epochs": round(100 * (acc["sktransfer pseudo-label stream"]
                                                                    - acc["labels alone, epochs"]), 1)})
    return rows, gains


def run(quick: bool, out_dir: Path) -> Path:
    if not (SHARED_DATA / "trec").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'trec'} is absent: this benchmark needs the shared data.")
    mode = "quick" if quick else "full"
    setting = SETTINGS[mode]
    rows, gains = summarise(measure(setting))
    mean_gain = np.mean([g["self-training - labels alone (points)"] for g in gains])
    body = (headline(f"self-training minus labels alone, mean over {len(gains)} cases: {mean_gain:+.1f} points")
            + f"\nMode: {mode}. Settings: {setting}.\n\n## Gains (mean over draws, points)\n\n"
            + markdown_table(gains) + "\n\n## Every cell (mean ± std over draws)\n\n" + markdown_table(rows) + "\n")
    return write_result("semi_supervised", "Unlabelled rows: self-training against labels alone and "
                        "SelfTrainingClassifier", body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS))

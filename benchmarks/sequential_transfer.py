"""Sequential transfer: MiniLM fine-tuned on SST-2, then the backbone of each Amazon review domain's classifier.

Stage 1 fine-tunes ``PretrainedTextClassifier`` on SST-2 (the accuracy benchmark's recipe: all 60,614
phrases, one epoch, full fine-tuning; fitted once and kept, see ``_sst2_model``). Stage 2, per Amazon
review domain and number of labelled reviews n (100, 300, 1,000; 3 random stratified draws each, the
domain's other reviews as the test set): ``PretrainedTextClassifier(backbone=...)`` at its defaults
(frozen backbone, converged linear head) on the pretrained MiniLM against the same on the SST-2 model's
backbone. One process per domain and backbone computes the domain's embeddings once (the feature
cache). Quick mode: 2,000 SST-2 phrases, two domains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._harness import (
    SHARED_DATA,
    headline,
    markdown_table,
    run_isolated,
    synthetic_texts,
    tiny,
    tiny_text_backbone,
    write_result,
)
from ._sst2_model import fine_tuned_on_sst2

TINY = True
DOMAINS = {"quick": ("books", "kitchen"), "full": ("books", "dvd", "electronics", "kitchen")}
SIZES, SEEDS = (100, 300, 1000), (0, 1, 2)
BACKBONES = ("pretrained MiniLM", "MiniLM fine-tuned on SST-2")


def _reviews(domain: str) -> tuple[list[str], np.ndarray]:
    import csv

    if tiny():
        X, y = synthetic_texts(40, seed=hash(domain) % 100)
        return X, np.asarray(y)
    with open(SHARED_DATA / "amazon_reviews" / f"{domain}.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], np.asarray([int(r[1]) for r in rows])


def _base_params() -> dict:
    return {"backbone": tiny_text_backbone(), "max_length": 16} if tiny() else {}


def learning_curve(domain: str, backbone: str) -> dict:
    """Stage 2 for one domain and backbone: accuracy per (n, seed), embeddings computed once."""
    from sklearn.model_selection import train_test_split

    from sktransfer import PretrainedTextClassifier

    X, y = _reviews(domain)
    params = {**_base_params(), "backbone": backbone} if backbone else _base_params()
    PretrainedTextClassifier(**params).fit(X, y)  # fills the feature cache for every draw below
    scores: dict = {}
    for n in SIZES:
        size = min(n, len(X) // 2) if tiny() else n
        for seed in SEEDS:
            idx_train, idx_test = train_test_split(np.arange(len(X)), train_size=size, stratify=y, random_state=seed)
            clf = PretrainedTextClassifier(**params, random_state=seed).fit([X[i] for i in idx_train], y[idx_train])
            scores[f"{n}/{seed}"] = float(clf.score([X[i] for i in idx_test], y[idx_test]))
    return scores


def plot(rows: list[dict], path: Path) -> Path:
    """Accuracy against the number of labelled reviews, one panel per domain, one line per backbone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(dict.fromkeys(row["domain"] for row in rows))
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains), 3), squeeze=False)
    for ax, domain in zip(axes[0], domains):
        for backbone in BACKBONES:
            mine = [row for row in rows if row["domain"] == domain and row["backbone"] == backbone]
            ax.errorbar([r["n"] for r in mine], [r["accuracy % (mean)"] for r in mine],
                        yerr=[r["std"] for r in mine], label=backbone, marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_title(domain)
        ax.set_xlabel("labelled reviews")
    axes[0][0].set_ylabel("test accuracy %")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(quick: bool, out_dir: Path) -> Path:
    """Both stages; write ``sequential_transfer.md`` and ``sequential_transfer.png``."""
    if not tiny() and not (SHARED_DATA / "amazon_reviews").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'amazon_reviews'} is absent: this benchmark needs it and sst2.")
    stage1 = fine_tuned_on_sst2(quick)
    folder = stage1["folder"]
    rows = []
    for domain in DOMAINS["quick" if quick or tiny() else "full"]:
        for name, backbone in zip(BACKBONES, (None, folder)):
            scores = run_isolated("benchmarks.sequential_transfer:learning_curve", domain=domain, backbone=backbone)
            for n in SIZES:
                values = 100 * np.asarray([scores[f"{n}/{seed}"] for seed in SEEDS])
                rows.append({"domain": domain, "n": n, "backbone": name, "accuracy % (mean)": values.mean(),
                             "std": values.std()})
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(rows, out_dir / "sequential_transfer.png")
    mean = {(r["domain"], r["n"], r["backbone"]): r["accuracy % (mean)"] for r in rows}
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    gains = {n: np.mean([mean[d, n, BACKBONES[1]] - mean[d, n, BACKBONES[0]] for d in domains]) for n in SIZES}
    mode = "tiny" if tiny() else "quick" if quick else "full"
    top = headline("SST-2 backbone minus pretrained backbone, mean over domains: "
                   + ", ".join(f"{gain:+.1f} points at n={n}" for n, gain in gains.items()))
    notes = __doc__.split(chr(10) * 2)[1].replace("``", "`")
    body = (f"{top}\n\nMode: {mode}. {notes}\n\nStage 1: {stage1['n_train']:,} SST-2 "
            f"phrases, SST-2 test accuracy {100 * stage1['sst2_accuracy']:.1f} %, fit {stage1['fit_s']:.0f} s "
            f"(fitted {stage1['fitted']}).\n\n"
            f"{markdown_table(rows)}\n\n![learning curves](sequential_transfer.png)\n")
    return write_result("sequential_transfer", "Sequential transfer: an SST-2 model as the next backbone", body,
                        out_dir)

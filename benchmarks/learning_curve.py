"""Accuracy against the number of training examples: sktransfer's frozen defaults against classic baselines.

SST-2: TF-IDF(1-2 gram) + LogisticRegression, frozen MiniLM embeddings + LogisticRegression and
``PretrainedTextClassifier()`` with its defaults (frozen backbone, trained head). Hymenoptera: raw
32x32 pixels + LogisticRegression against ``PretrainedImageClassifier()``. Sizes up to 200 are
averaged over 3 random draws (mean ± std); embeddings are computed once thanks to the feature cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._harness import (
    SHARED_DATA,
    headline,
    markdown_table,
    read_hymenoptera,
    read_sst2,
    synthetic_images,
    synthetic_texts,
    tiny,
    write_result,
)
from .accuracy import backbone_params

TINY = True
TEXT_SIZES = {"quick": (50, 100, 200, 1000), "full": (50, 100, 200, 1000, 2000)}
IMAGE_SIZES = (50, 100, 200, 245)
SMALL, SEEDS = 200, (0, 1, 2)


def _pixels(images: list) -> np.ndarray:
    from sktransfer._image_data import load_image

    return np.stack([np.asarray(load_image(x, i).resize((32, 32))).ravel() / 255.0 for i, x in enumerate(images)])


def _methods(dataset: str) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, PretrainedTextEmbedder

    params = backbone_params(dataset)
    if dataset == "sst2":
        return {
            "TF-IDF + LogisticRegression": lambda seed: make_pipeline(
                TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=2000)),
            "frozen MiniLM + LogisticRegression": lambda seed: make_pipeline(
                PretrainedTextEmbedder(**params), LogisticRegression(max_iter=2000)),
            "PretrainedTextClassifier()": lambda seed: PretrainedTextClassifier(random_state=seed, **params),
        }
    return {
        "raw pixels + LogisticRegression": lambda seed: make_pipeline(
            FunctionTransformer(_pixels), LogisticRegression(max_iter=2000)),
        "PretrainedImageClassifier()": lambda seed: PretrainedImageClassifier(random_state=seed, **params),
    }


def curve(dataset: str, sizes: tuple[int, ...], X_pool: list, y_pool: list, X_test: list, y_test: list) -> list[dict]:
    """One row per training size: mean and std accuracy (%) of each method over the draws."""
    rows = []
    for n in sizes:
        n = min(n, len(X_pool))
        row: dict = {"train n": n}
        for name, make in _methods(dataset).items():
            scores = []
            for seed in SEEDS if n <= SMALL else SEEDS[:1]:
                idx = np.random.default_rng(seed).permutation(len(X_pool))[:n]
                model = make(seed).fit([X_pool[i] for i in idx], [y_pool[i] for i in idx])
                scores.append(100 * float(np.mean(np.asarray(model.predict(X_test)) == np.asarray(y_test))))
            row[name] = f"{np.mean(scores):.1f} ± {np.std(scores):.1f}" if len(scores) > 1 else f"{scores[0]:.1f}"
            row[f"_{name}"] = (float(np.mean(scores)), float(np.std(scores)))
        rows.append(row)
    return rows


def plot(curves: dict[str, list[dict]], path: Path) -> Path:
    """Accuracy against training size, one panel per data set (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (title, rows) in zip(axes[0], curves.items()):
        sizes = [row["train n"] for row in rows]
        for key in (k for k in rows[0] if k.startswith("_")):
            mean, std = np.array([row[key] for row in rows]).T
            ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=key[1:])
        ax.set(xscale="log", xlabel="training examples", ylabel="test accuracy (%)", title=title)
        ax.set_xticks(sizes, [str(n) for n in sizes], minor=False)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: list[dict]) -> str:
    return markdown_table([{k: v for k, v in row.items() if not k.startswith("_")} for row in rows])


def run(quick: bool, out_dir: Path) -> Path:
    """Measure both learning curves and write ``learning_curve.md`` and ``learning_curve.png``."""
    if tiny():
        text = (*synthetic_texts(40, seed=0), *synthetic_texts(24, seed=1))
        image = (*synthetic_images(40, seed=0), *synthetic_images(24, seed=1))
        text_sizes, image_sizes = (8, 40), (8, 40)
    else:
        if not (SHARED_DATA / "sst2").is_dir() or not (SHARED_DATA / "hymenoptera").is_dir():
            raise FileNotFoundError(f"{SHARED_DATA}/sst2 or /hymenoptera is absent")
        text_sizes = TEXT_SIZES["quick" if quick else "full"]
        text = (*read_sst2("train", max(text_sizes)), *read_sst2("test"))
        image = (*read_hymenoptera("train"), *read_hymenoptera("val"))
        image_sizes = IMAGE_SIZES
    curves = {"SST-2 (test.tsv, 872)": curve("sst2", text_sizes, *text),
              "Hymenoptera (val, 153)": curve("hymenoptera", image_sizes, *image)}
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(curves, out_dir / "learning_curve.png")
    (text_title, text_rows), (image_title, image_rows) = curves.items()
    small_text, small_image = text_rows[0], image_rows[0]
    top = headline(
        f"with {small_text['train n']} examples: SST-2 {small_text['PretrainedTextClassifier()']} % "
        f"(TF-IDF {small_text['TF-IDF + LogisticRegression']} %), hymenoptera "
        f"{small_image['PretrainedImageClassifier()']} % "
        f"(raw pixels {small_image['raw pixels + LogisticRegression']} %)")
    body = (
        f"{top}\nMode: {'tiny' if tiny() else 'quick' if quick else 'full'}. Test accuracy (%) against the number "
        f"of training examples; sizes up to {SMALL} averaged over {len(SEEDS)} random draws (mean ± std). SST-2 "
        "draws come from a seeded random subsample of train.tsv. sktransfer estimators use their defaults (frozen "
        "backbone, linear head solved to convergence on the embeddings, C=\"auto\")."
        f"\n\n![learning curves]({png.name})\n\n"
        f"## {text_title}\n\n{_table(text_rows)}\n\n## {image_title}\n\n{_table(image_rows)}\n"
    )
    return write_result("learning_curve", "Learning curves: accuracy against training-set size", body, out_dir)

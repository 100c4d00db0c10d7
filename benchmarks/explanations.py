"""Explanations: are the maps and word scores faithful to the model, sensitive to it, and cheap enough?

The default classifiers (EfficientNet-Lite0 on hymenoptera train; all-MiniLM-L6-v2 on SST-2 train phrases)
are explained on hymenoptera val (each image first cut to the model's centre crop, so that every pixel of a
map is one the model sees) and on the SST-2 test sentences, for the predicted class:

1. Deletion: the top 20 % of attributed pixels (replaced by a strongly blurred copy of the image) or words
   (left out of the text) are removed, and the predicted class's probability drop is compared with
   removing a random 20 % (image: a random 7x7 map upsampled, so random patches as coarse as Grad-CAM's;
   text: random scores), each on the same inputs. The deletion curve (0 to 100 % of pixels, 0 to 80 % of
   words, in 20 % steps) is summarised by its area (the mean probability along the curve: lower is more
   faithful).
2. Sanity check (Adebayo et al., 2018): the head's weights are re-initialised and the same class explained;
   the mean Spearman rank correlation of each map (texts of three or more words) with the trained model's.
3. Cost: wall and CPU seconds per image or sentence of ``explain`` (including the extra forward pass that
   finds the predicted class), on a CPU shared with other jobs.

Integrated gradients (16 steps on images, 20 on texts) and the sanity check run on the first inputs only
(``slow_images``, ``slow_texts``): on the shared 2-core CPU they cost about ten times Grad-CAM.

Run with ``python -m benchmarks.explanations [--full]``.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

from ._harness import (
    SHARED_DATA,
    headline,
    markdown_table,
    read_hymenoptera,
    read_sst2,
    write_result,
)

# "slow": how many of the inputs (the first) the slower method and the sanity check run on.
SETTINGS = {"quick": {"images": 16, "slow_images": 6, "train_texts": 1000, "texts": 60, "slow_texts": 30},
            "full": {"images": None, "slow_images": 24, "train_texts": 3000, "texts": None, "slow_texts": 80}}
IMAGE_FRACTIONS = np.linspace(0, 1, 6)
TEXT_FRACTIONS = np.linspace(0, 0.8, 5)
SLOW = {"integrated_gradients"}
SHARE = 0.2


def _log(message: str) -> None:
    print(f"[explanations] {message}", file=sys.stderr, flush=True)


def _timed_explain(clf, X, method: str, slow: int):
    """The explanation and its cost per input: wall seconds, and the CPU seconds of this process (its threads'
    sum; on a CPU shared with other jobs, the wall time stretches while the CPU time stays near its own)."""
    X = X[:slow] if method in SLOW else X
    start, cpu = time.perf_counter(), time.process_time()
    explanation = clf.explain(X, method=method)
    return explanation, ((time.perf_counter() - start) / len(X), (time.process_time() - cpu) / len(X))


def _reinitialised(clf):
    import torch

    model = copy.deepcopy(clf)
    torch.manual_seed(1)
    for layer in model.net_.module_.head.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    return model


def _per_class(clf, X, labels, method: str) -> list:
    """Maps of each input for the class ``labels`` names (the trained model's predictions)."""
    maps = [None] * len(X)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        found = clf.explain([X[i] for i in rows], target=label, method=method).attributions
        for row, attribution in zip(rows, found):
            maps[row] = attribution
    return maps


def _add_sanity(rows: list, clf, X: list, predicted: np.ndarray, maps: dict) -> None:
    """Each method's row gets the mean Spearman rho of its maps of ``X`` with those of the re-initialised head."""
    model, names = _reinitialised(clf), clf.classes_[predicted[:len(X)]]
    for row in rows:
        if not row["method"].startswith("random"):
            row["sanity: Spearman rho"] = _spearman(maps[row["method"]][:len(X)],
                                                    _per_class(model, X, names, row["method"]))


def _spearman(a: list, b: list, min_size: int = 3) -> float:
    from scipy.stats import spearmanr

    values = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b) if x.size >= min_size]
    return float(np.nanmean(values))


# ------------------------------------------------------------------ images
def _delete_pixels(images, blurred, maps, share: float) -> list:
    out = []
    for image, blur, attribution in zip(images, blurred, maps):
        k = int(round(share * attribution.size))
        mask = np.zeros(attribution.size, dtype=bool)
        mask[np.argsort(-attribution.ravel(), kind="stable")[:k]] = True
        out.append(np.where(mask.reshape(attribution.shape)[..., None], blur, image))
    return out


def _image_curve(clf, images, blurred, maps, predicted: np.ndarray) -> np.ndarray:
    """p(predicted class) per deleted share (rows) and image (columns), for the first ``len(maps)`` images."""
    rows = np.arange(len(maps))
    return np.array([clf.predict_proba(_delete_pixels(images, blurred, maps, share))[rows, predicted[rows]]
                     for share in IMAGE_FRACTIONS])


def _random_maps(images: list, transform) -> list:
    """Random 7x7 maps upsampled over the region the model sees (its centre crop), -1 outside: a random 20 %
    removes 20 % of the pixels the model sees, as the methods' maps (zero outside the crop) do."""
    import torch
    import torch.nn.functional as F

    from sktransfer._explain_image import _crop_box

    generator, maps = torch.Generator().manual_seed(0), []
    for image in images:
        height, width = image.shape[:2]
        left, top, right, bottom = (round(v) for v in _crop_box(transform, width, height))
        found = np.full((height, width), -1.0, dtype=np.float32)
        found[top:bottom, left:right] = F.interpolate(torch.rand(1, 1, 7, 7, generator=generator),
                                                      size=(bottom - top, right - left), mode="bilinear")[0, 0]
        maps.append(found)
    return maps


def _images(settings: dict, out_dir: Path) -> tuple[list, list]:
    from PIL import Image, ImageFilter

    from sktransfer import PretrainedImageClassifier
    from sktransfer._image_data import build_transform, load_image

    X, y = read_hymenoptera("train")
    clf = PretrainedImageClassifier(random_state=0).fit(X, y)
    paths, labels = read_hymenoptera("val")
    if settings["images"]:
        keep = np.random.default_rng(0).choice(len(paths), settings["images"], replace=False)
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    crop = build_transform(clf.data_config_).resize_crop
    images = [np.asarray(crop(load_image(p, i))) for i, p in enumerate(paths)]
    blurred = [np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(12))) for im in images]
    proba = clf.predict_proba(images)
    predicted = proba.argmax(1)
    accuracy = float((clf.classes_[predicted] == np.asarray(labels)).mean())
    _log(f"images: accuracy {accuracy:.3f} on {len(images)}")
    maps = {"random (7x7 patches)": _random_maps(images, build_transform(clf.data_config_))}
    cost = {}
    explanations = {}
    for method in ("gradcam", "integrated_gradients"):
        explanations[method], cost[method] = _timed_explain(clf, images, method, settings["slow_images"])
        maps[method] = explanations[method].attributions
        _log(f"images: {method} {cost[method]} s/image")
    rows = _deletion_rows("hymenoptera val", maps, cost,
                          lambda m: _image_curve(clf, images, blurred, m, predicted), IMAGE_FRACTIONS)
    _add_sanity(rows, clf, images[:settings["slow_images"]], predicted, maps)
    figure = explanations["gradcam"].plot(max_items=8, n_cols=4)
    picture = out_dir / "explanations_images.png"
    figure.savefig(picture, dpi=60)
    return rows, [picture]


# ------------------------------------------------------------------- texts
def _words_removed(text: str, scores: np.ndarray, share: float) -> str:
    words = text.split()
    k = min(len(words) - 1, int(np.ceil(share * len(words))))
    drop = set(np.argsort(-np.asarray(scores), kind="stable")[:k].tolist())
    return " ".join(w for i, w in enumerate(words) if i not in drop)


def _text_curve(clf, texts, scores, predicted: np.ndarray) -> np.ndarray:
    """p(predicted class) per deleted share (rows) and text (columns), for the first ``len(scores)`` texts."""
    rows = np.arange(len(scores))
    return np.array([clf.predict_proba([_words_removed(t, s, share) for t, s in zip(texts, scores)])[rows,
                     predicted[rows]] for share in TEXT_FRACTIONS])


def _texts(settings: dict, out_dir: Path) -> tuple[list, list]:
    from sktransfer import PretrainedTextClassifier

    X, y = read_sst2("train", n=settings["train_texts"])
    clf = PretrainedTextClassifier(random_state=0).fit(X, y)
    texts, labels = read_sst2("test", n=settings["texts"])
    proba = clf.predict_proba(texts)
    predicted = proba.argmax(1)
    _log(f"texts: accuracy {float((clf.classes_[predicted] == np.asarray(labels)).mean()):.3f} on {len(texts)}")
    rng = np.random.default_rng(0)
    maps = {"random": [rng.random(len(t.split())) for t in texts]}
    cost, explanations = {}, {}
    for method in ("occlusion", "integrated_gradients"):
        explanations[method], cost[method] = _timed_explain(clf, texts, method, settings["slow_texts"])
        maps[method] = explanations[method].attributions
        _log(f"texts: {method} {cost[method]} s/sentence")
    rows = _deletion_rows("SST-2 test", maps, cost,
                          lambda m: _text_curve(clf, texts, m, predicted), TEXT_FRACTIONS)
    _add_sanity(rows, clf, texts[:settings["slow_texts"]], predicted, maps)
    chosen = [i for i, t in enumerate(texts) if 8 <= len(t.split()) <= 16][:6]
    explanation = explanations["occlusion"]
    for field in ("attributions", "targets", "words"):
        setattr(explanation, field, [getattr(explanation, field)[i] for i in chosen])
    explanation.outputs = explanation.outputs[chosen]
    figure = explanation.plot(max_items=6)
    picture = out_dir / "explanations_texts.png"
    figure.savefig(picture, dpi=80)
    return rows, [picture]


def _deletion_rows(data: str, maps: dict, cost: dict, curve, fractions) -> list:
    """One row per method (the first is the random baseline), each on the inputs it explained; the random
    drop it is compared with is measured on the same inputs."""
    curves = {method: curve(found) for method, found in maps.items()}
    at = int(np.argmin(np.abs(fractions - SHARE)))
    baseline = curves[next(iter(maps))]
    rows = []
    for method, values in curves.items():
        n = values.shape[1]
        drop = values[0].mean() - values[at].mean()
        random_drop = baseline[0, :n].mean() - baseline[at, :n].mean()
        rows.append({"data": data, "method": method, "inputs": n, "p(predicted) before": float(values[0].mean()),
                     "after top 20 % removed": float(values[at].mean()), "drop": float(drop),
                     "random drop (same inputs)": float(random_drop),
                     "drop / random drop": float(drop / random_drop) if random_drop > 0 else float("nan"),
                     "deletion AUC": float(np.trapezoid(values.mean(1), fractions) / (fractions[-1] - fractions[0])),
                     "wall s per input": cost.get(method, (np.nan, np.nan))[0],
                     "CPU s per input": cost.get(method, (np.nan, np.nan))[1], "sanity: Spearman rho": np.nan})
        _log(str(rows[-1]))
    return rows


def run(quick: bool, out_dir: Path) -> Path:
    if not (SHARED_DATA / "sst2").is_dir() or not (SHARED_DATA / "hymenoptera").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA} lacks sst2 or hymenoptera: this benchmark needs the shared data.")
    import matplotlib

    matplotlib.use("Agg")
    mode = "quick" if quick else "full"
    out_dir.mkdir(parents=True, exist_ok=True)
    image_rows, image_pictures = _images(SETTINGS[mode], out_dir)
    write_result("explanations", "Explanations: faithfulness, sanity and cost (images only: the texts did not finish)",
                 markdown_table(image_rows) + "\n", out_dir)
    text_rows, text_pictures = _texts(SETTINGS[mode], out_dir)
    rows = image_rows + text_rows
    best = {r["data"]: r for r in rows if r["method"] in ("gradcam", "occlusion")}
    image, text = best["hymenoptera val"], best["SST-2 test"]
    summary = (f"deleting the top 20 % by the default method lowers p(predicted) {image['drop / random drop']:.1f}x "
               f"(images, Grad-CAM) and {text['drop / random drop']:.1f}x (texts, occlusion) as much as a random "
               f"20 %; head re-initialised: Spearman rho {image['sanity: Spearman rho']:.2f} / "
               f"{text['sanity: Spearman rho']:.2f}; {image['wall s per input']:.2f} s per image, "
               f"{text['wall s per input']:.3f} s per sentence (wall time on a CPU shared with other jobs)")
    pictures = "\n".join(f"![{p.stem}]({p.name})" for p in image_pictures + text_pictures)
    body = (headline(summary) + f"\nMode: {mode}. Settings: {SETTINGS[mode]}.\n\n" + markdown_table(rows)
            + "\n\nTimings were taken on a 2-core CPU shared with other engineers' jobs running at the same time: "
            "read them as upper bounds. The defaults, chosen by these measurements: Grad-CAM for convolutional "
            "image backbones, occlusion for texts (integrated gradients stays the method for vision transformers).\n\n"
            + pictures + "\n")
    return write_result("explanations", "Explanations: faithfulness, sanity and cost", body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS))

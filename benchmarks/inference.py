"""CPU speed: sktransfer against a plain PyTorch loop and against the backbone's bare forward, in one run.

Images: hymenoptera JPEGs, efficientnet_lite0 (packaged weights). Texts: SST-2 (``test.tsv`` sentences
to predict, ``train.tsv`` phrases to train on), all-MiniLM-L6-v2, max_length 128. Batch 32 throughout.

- plain loop: what one writes by hand: PIL decode and timm's eval transform per image (the tokenizer per
  batch of texts, padded to the longest, in the given order), a DataLoader, the model in its default
  (NCHW) memory format; training: AdamW, cross-entropy, the same trainable blocks as sktransfer;
- bare forward: the backbone alone on tensors preprocessed beforehand (texts: tokenised and length
  sorted as sktransfer does), in its fastest form: images are timed in both memory formats and with
  BatchNorm folded into the convolutions, as sktransfer runs them, and the fastest is the limit;
- sktransfer: ``transform`` of an embedder and ``predict_proba`` of a frozen-backbone classifier
  (``cache=False``), one-epoch ``fit`` (``max_epochs=1``; it includes the embedding pass that fits the
  head's standardisation and, with ``cache=True``, the frozen prefix's pass);
- opt-in, never defaults, marked (opt-in) and left out of the headline's default ratios because they
  change the numbers: int8 dynamic quantisation of the text backbone (``quantize_int8``) and
  ``precision="bf16"`` (bfloat16 autocast, fast on CPUs with AVX512-BF16 or AMX), each with its accuracy
  change (logistic regression on the embeddings: SST-2 train -> test, hymenoptera train -> val);
- grid search: ``GridSearchCV`` (8 candidates x 5 folds and the refit; frozen backbone, feature cache on,
  ``max_epochs=3``) with the backbone read from disk at every fit (weights cache off: before) and once per
  process (on: after).

Every method first runs on a few items (imports, first allocations); then all run interleaved, ``REPEATS``
times, and the fastest run of each counts. Ratios compare methods of the same run: on a shared machine the
absolute figures move with the load, ratios much less. Run ``python -m benchmarks --only inference --out DIR``
(``--full`` for the whole data).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from ._harness import (
    SHARED_DATA,
    headline,
    markdown_table,
    read_hymenoptera,
    read_sst2,
    synthetic_images,
    synthetic_texts,
    tiny,
    tiny_text_backbone,
    write_result,
)
from ._plain_loops import BATCH, LR, _max_length, bare_forward, plain_predict, plain_train

TINY = True
OPT_IN = "(opt-in)"  # methods that change the numbers (int8, bf16): never a default, never in the headline ratios
SIZES = {  # images to predict, images to train on, texts to predict, texts to train on, grid-search items
    "tiny": dict(images=16, train_images=16, texts=16, train_texts=16, grid=16, cv=2, grid_points=2),
    "quick": dict(images=64, train_images=64, texts=256, train_texts=256, grid=32, cv=5, grid_points=8),
    "full": dict(images=None, train_images=None, texts=None, train_texts=1024, grid=None, cv=5, grid_points=8),
}
REPEATS = {"tiny": 1, "quick": 1, "full": 2}
GRID = {"C": [0.01, 0.1, 1.0, 10.0], "head_hidden": [(), (32,)]}


# ----------------------------------------------------------------- data
def _image_data(mode: str, split: str, n: int | None) -> tuple[list[str], np.ndarray]:
    if tiny():
        arrays, labels = synthetic_images(n or 16)
        folder = Path(tempfile.mkdtemp(prefix="sktransfer_bench_"))
        paths = []
        for i, array in enumerate(arrays):
            paths.append(str(folder / f"{i}.jpg"))
            Image.fromarray(np.kron(array, np.ones((4, 4, 1), dtype=np.uint8))).save(paths[-1])
        return paths, (np.asarray(labels) == "light").astype(int)
    if not (SHARED_DATA / "hymenoptera").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'hymenoptera'} is absent: this benchmark needs hymenoptera.")
    paths, labels = read_hymenoptera(split)
    y = (np.asarray(labels) == "bees").astype(int)
    keep = np.sort(np.random.default_rng(0).permutation(len(paths))[:n]) if n else np.arange(len(paths))
    return [paths[i] for i in keep], y[keep]


def _text_data(split: str, n: int | None) -> tuple[list[str], np.ndarray]:
    if tiny():
        X, y = synthetic_texts(n or 16)
        return X, np.asarray(y)
    if not (SHARED_DATA / "sst2").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'sst2'} is absent: this benchmark needs SST-2.")
    X, y = read_sst2(split, n)
    return X, np.asarray(y)


def _image_backbone():
    from sktransfer._backbones import resolve_image_backbone

    return resolve_image_backbone(*(("test_efficientnet", False) if tiny() else ("efficientnet_lite0", True)))


def _text_backbone(attn: str | None = None):
    from transformers import AutoModel

    from sktransfer._backbones import TextEncoder, _text_source, resolve_text_backbone

    name = tiny_text_backbone() if tiny() else "all-MiniLM-L6-v2"
    backbone = resolve_text_backbone(name)
    if attn is not None:
        backbone.encoder = TextEncoder(AutoModel.from_pretrained(_text_source(name), attn_implementation=attn))
    return backbone


def _image_params() -> dict:
    return {"backbone": "test_efficientnet", "pretrained": False} if tiny() else {}


def _text_params() -> dict:
    return {"backbone": tiny_text_backbone(), "max_length": _max_length()} if tiny() else {"max_length": _max_length()}


# ------------------------------------------------------------ sktransfer
def sk_embedder(modality: str, X, quantize: bool = False, num_workers: int | None = None, precision: str = "auto"):
    """A fitted embedder (``cache=False``: every ``transform`` runs the backbone), int8 or bf16 on request."""
    from sktransfer import PretrainedImageEmbedder, PretrainedTextEmbedder
    from sktransfer._quantize import quantize_int8

    if modality == "images":
        embedder = PretrainedImageEmbedder(cache=False, batch_size=BATCH, num_workers=num_workers,
                                           precision=precision, **_image_params()).fit(X[:2])
    else:
        embedder = PretrainedTextEmbedder(cache=False, batch_size=BATCH, precision=precision,
                                          **_text_params()).fit(X[:2])
    return quantize_int8(embedder) if quantize else embedder


def sk_classifier(modality: str, X, y):
    """A frozen-backbone classifier fitted on 2 items per class (``cache=False``: predictions run the backbone)."""
    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier

    cls, params = ((PretrainedImageClassifier, _image_params()) if modality == "images"
                   else (PretrainedTextClassifier, _text_params()))
    few = np.concatenate([np.flatnonzero(y == label)[:2] for label in (0, 1)])
    clf = cls(freeze_layers="all", cache=False, batch_size=BATCH, random_state=0, **params)
    return clf.fit([X[i] for i in few], y[few])


def sk_train(modality: str, X, y, freeze_layers, cache: bool, precision: str = "auto") -> None:
    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, feature_cache

    feature_cache.clear()
    cls, params = ((PretrainedImageClassifier, _image_params()) if modality == "images"
                   else (PretrainedTextClassifier, _text_params()))
    cls(freeze_layers=freeze_layers, max_epochs=1, lr=LR, batch_size=BATCH, cache=cache, random_state=0,
        precision=precision, **params).fit(X, y)


def grid_search(modality: str, X, y, size: dict, keep_weights: bool) -> tuple[float, int]:
    """Seconds and backbone loads of one GridSearchCV, with the weights cache on or off."""
    from sklearn.model_selection import GridSearchCV

    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier, feature_cache
    from sktransfer._weights_cache import backbone_cache

    cls, params = ((PretrainedImageClassifier, _image_params()) if modality == "images"
                   else (PretrainedTextClassifier, _text_params()))
    # tiny mode's random backbones are never kept (nothing names their weights): a local copy is.
    if tiny() and modality == "images":
        params = {"backbone": _tiny_local_dir()}
    grid = GRID if size["grid_points"] == 8 else {"C": GRID["C"][:size["grid_points"]]}
    feature_cache.clear()
    backbone_cache.clear()
    loads = backbone_cache.loads
    estimator = cls(freeze_layers="all", max_epochs=3, batch_size=BATCH, random_state=0, **params)
    search = GridSearchCV(estimator, grid, cv=size["cv"])
    start = time.perf_counter()
    with mock.patch.object(backbone_cache, "max_bytes", backbone_cache.max_bytes if keep_weights else 0):
        search.fit(X, y)
    return time.perf_counter() - start, backbone_cache.loads - loads


def _tiny_local_dir() -> str:
    global _TINY_TIMM
    if _TINY_TIMM is None:
        import timm
        from timm.models import save_for_hf

        _TINY_TIMM = tempfile.mkdtemp(prefix="sktransfer_tiny_timm_")
        save_for_hf(timm.create_model("test_efficientnet", pretrained=False), _TINY_TIMM)
    return _TINY_TIMM


_TINY_TIMM: str | None = None


# ----------------------------------------------------------------- run
def _best(methods: dict, repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` interleaved runs of each method (after one warm-up run each on few items)."""
    best = {name: float("inf") for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            method()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _rows(section: str, n: int, seconds: dict[str, float], plain: str, bare: float | None) -> list[dict]:
    return [{"task": section, "method": name, "items/s": n / s, "x plain loop": seconds[plain] / s,
             "x bare forward": (bare / s) if bare else ""} for name, s in seconds.items()]


def _serial(method, *args):
    """``method(*args)`` with sktransfer's parallel decoding switched off (one image after another)."""
    from sktransfer._image_data import ImageDataset

    with mock.patch.object(ImageDataset, "__getitems__", None):
        return method(*args)


def run(quick: bool, out_dir: Path) -> Path:
    """Measure everything on images and texts; write ``inference.md``; return its path."""
    mode = "tiny" if tiny() else "quick" if quick else "full"
    size, repeats = SIZES[mode], REPEATS[mode]
    image_bb, text_bb = _image_backbone(), _text_backbone()
    eager_bb = _text_backbone("eager")
    rows, notes, ratio = [], [], {}
    Xi, yi = _image_data(mode, "val", size["images"])
    Xt, yt = _text_data("test", size["texts"])
    embedders = {m: sk_embedder(m, X) for m, X in (("images", Xi), ("texts", Xt))}
    classifiers = {m: sk_classifier(m, X, y) for m, X, y in (("images", Xi, yi), ("texts", Xt, yt))}
    int8 = sk_embedder("texts", Xt, quantize=True)
    bf16 = {m: sk_embedder(m, X, precision="bf16") for m, X in (("images", Xi), ("texts", Xt))}
    worker = sk_embedder("images", Xi, num_workers=1)
    for modality, warm, backbone in (("images", Xi[:4], image_bb), ("texts", Xt[:4], text_bb)):
        plain_predict(modality, warm, backbone)  # imports, first allocations
        embedders[modality].transform(warm)

    # ---- inference (only transform and predict_proba are timed: the estimators were fitted above)
    inference = {
        "images": {
            "plain loop (PIL + timm transform, NCHW)": lambda: plain_predict("images", Xi, image_bb),
            "sktransfer transform (embedder)": lambda: embedders["images"].transform(Xi),
            "sktransfer predict_proba (frozen classifier)": lambda: classifiers["images"].predict_proba(Xi),
            "sktransfer transform, serial decoding": lambda: _serial(embedders["images"].transform, Xi),
            "sktransfer transform, 1 DataLoader worker decoding": lambda: worker.transform(Xi),
            f"sktransfer transform, precision='bf16' {OPT_IN}": lambda: bf16["images"].transform(Xi),
        },
        "texts": {
            "plain loop (tokenizer per batch, sdpa)": lambda: plain_predict("texts", Xt, text_bb),
            "plain loop, eager attention": lambda: plain_predict("texts", Xt, eager_bb),
            "plain loop, padded to max_length": lambda: plain_predict("texts", Xt, text_bb, "max_length"),
            "tokenisation alone": lambda: [text_bb.tokenizer(Xt[s:s + BATCH], padding=True, truncation=True,
                                                             max_length=_max_length())
                                           for s in range(0, len(Xt), BATCH)],
            "sktransfer transform (embedder)": lambda: embedders["texts"].transform(Xt),
            "sktransfer predict_proba (frozen classifier)": lambda: classifiers["texts"].predict_proba(Xt),
            f"sktransfer transform, int8 dynamic quantisation {OPT_IN}": lambda: int8.transform(Xt),
            f"sktransfer transform, precision='bf16' {OPT_IN}": lambda: bf16["texts"].transform(Xt),
        },
    }
    for modality, X, backbone in (("images", Xi, image_bb), ("texts", Xt, text_bb)):
        runs = [bare_forward(modality, X, backbone) for _ in range(repeats)]
        bare = {fmt: min(run[fmt] for run in runs) for fmt in runs[0]}  # best of repeats, as every method
        fastest = min(bare, key=bare.get)
        seconds = _best(inference[modality], repeats)
        seconds.update({f"bare forward, {fmt}": s for fmt, s in bare.items()})
        plain = next(iter(inference[modality]))
        rows += _rows(f"predict {len(X)} {modality}", len(X), seconds, plain, bare[fastest])
        ratio[modality] = (seconds[plain] / seconds["sktransfer transform (embedder)"],
                           bare[fastest] / seconds["sktransfer transform (embedder)"],
                           seconds[plain] / seconds[f"sktransfer transform, precision='bf16' {OPT_IN}"])

    # ---- equality with the plain loop (same weights), and the accuracy change of int8
    ours = embedders["images"].transform(Xi)
    same_weights = copy.copy(image_bb)
    same_weights.encoder = copy.deepcopy(embedders["images"].encoder_).to(memory_format=torch.contiguous_format)
    reference = plain_predict("images", Xi, same_weights)
    rel = np.linalg.norm(ours - reference, axis=1) / np.linalg.norm(reference, axis=1)
    notes.append(f"Image embeddings against the plain loop's (same weights): max abs difference "
                 f"{np.abs(ours - reference).max():.2e}, max relative L2 difference {rel.max():.2e}.")
    notes += _accuracy_changes("texts", mode, size, {"int8 dynamic quantisation": {"quantize": True},
                                                      "precision='bf16'": {"precision": "bf16"}})
    notes += _accuracy_changes("images", mode, size, {"precision='bf16'": {"precision": "bf16"}})

    # ---- one epoch of training
    Xti, yti = _image_data(mode, "train", size["train_images"])
    Xtt, ytt = _text_data("train", size["train_texts"])
    for modality, X, y, backbone in (("images", Xti, yti, image_bb), ("texts", Xtt, ytt, text_bb)):
        for label, freeze in (("partial (last 2 blocks)", -2), ("full", "none")):
            methods = {"plain loop": lambda: plain_train(modality, X, y, backbone, freeze),
                       "sktransfer fit, cache=False": lambda: sk_train(modality, X, y, freeze, cache=False)}
            if freeze != "none":
                methods["sktransfer fit, cache=True (frozen prefix cached)"] = \
                    lambda: sk_train(modality, X, y, freeze, cache=True)
            methods[f"sktransfer fit, precision='bf16' {OPT_IN}"] = \
                lambda: sk_train(modality, X, y, freeze, cache=freeze != "none", precision="bf16")
            few = np.concatenate([np.flatnonzero(y == c)[:2] for c in np.unique(y)])
            warm = ([X[i] for i in few], y[few])
            plain_train(modality, *warm, backbone, freeze)
            sk_train(modality, *warm, freeze, cache=False)
            seconds = _best(methods, repeats)
            rows += _rows(f"fine-tune 1 epoch, {label}, {len(X)} {modality}", len(X), seconds, "plain loop", None)
            default = min(v for k, v in seconds.items() if k != "plain loop" and OPT_IN not in k)
            ratio[modality, label] = (seconds["plain loop"] / default,
                                      seconds["plain loop"] / seconds[f"sktransfer fit, precision='bf16' {OPT_IN}"])

    # ---- grid search: weights read per fit (before) or once per process (after)
    grid_rows = []
    for modality, data in (("images", lambda: _image_data(mode, "train", size["grid"])),
                           ("texts", lambda: _text_data("train", size["grid"] or 400))):
        X, y = data()
        before, loads_before = grid_search(modality, X, y, size, keep_weights=False)
        after, loads_after = grid_search(modality, X, y, size, keep_weights=True)
        grid_rows += [{"data": f"{len(X)} {modality}", "weights": "read at every fit (before)", "seconds": before,
                       "backbone loads": loads_before},
                      {"data": f"{len(X)} {modality}", "weights": "kept in memory (after)", "seconds": after,
                       "backbone loads": loads_after}]
        ratio[modality, "grid"] = (before, after, loads_before, loads_after)

    body = (
        headline(f"images: transform {ratio['images'][0]:.2f}x the plain loop ({ratio['images'][1]:.2f}x the bare "
                 f"forward), partial fine-tuning {ratio['images', 'partial (last 2 blocks)'][0]:.2f}x; texts: "
                 f"transform {ratio['texts'][0]:.2f}x; grid search {ratio['images', 'grid'][0]:.0f} s -> "
                 f"{ratio['images', 'grid'][1]:.0f} s ({ratio['images', 'grid'][3]} load(s)); opt-in bf16: image "
                 f"transform {ratio['images'][2]:.2f}x, partial fine-tuning "
                 f"{ratio['images', 'partial (last 2 blocks)'][1]:.2f}x, text transform {ratio['texts'][2]:.2f}x")
        + f"\nMode: {mode}; best of {repeats} interleaved run(s); {torch.get_num_threads()} torch threads.\n\n"
        + markdown_table(rows) + "\n\n"
        + f"Grid search: {size['grid_points']} candidates x {size['cv']} folds and the refit, frozen backbone, "
          "feature cache on, max_epochs=3.\n\n"
        + markdown_table(grid_rows) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n\n" + __doc__
    )
    return write_result("inference", "CPU speed: sktransfer vs a plain loop vs the bare forward", body, out_dir)


def _accuracy_changes(modality: str, mode: str, size: dict, variants: dict[str, dict]) -> list[str]:
    """Accuracy of a logistic regression on default (float32) embeddings and on each variant's, train -> test."""
    from sklearn.linear_model import LogisticRegression

    if modality == "texts":
        (Xtr, ytr), (Xte, yte) = (_text_data("train", 2000 if size["texts"] is None else size["train_texts"]),
                                  _text_data("test", size["texts"]))
    else:
        (Xtr, ytr), (Xte, yte) = (_image_data(mode, "train", size["train_images"]),
                                  _image_data(mode, "val", size["images"]))
    scores, embeddings = {}, {}
    for name, params in {"float32": {}, **variants}.items():
        embedder = sk_embedder(modality, Xtr, **params)
        train, test = embedder.transform(Xtr), embedder.transform(Xte)
        clf = LogisticRegression(max_iter=3000).fit(train, ytr)
        scores[name], embeddings[name] = (clf.predict(test) == yte).mean(), test
    a = embeddings["float32"]
    notes = []
    for label in variants:
        b = embeddings[label]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        notes.append(f"{label} ({modality}): logistic-regression accuracy {100 * scores['float32']:.1f} % (float32) "
                     f"-> {100 * scores[label]:.1f} % on {len(Xte)} test {modality} ({len(Xtr)} train); cosine "
                     f"similarity of the embeddings min {cosine.min():.4f}, median {np.median(cosine):.4f}.")
    return notes


if __name__ == "__main__":
    print(run(quick=True, out_dir=Path(tempfile.mkdtemp())))

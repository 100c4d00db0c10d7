"""What the frozen-feature cache saves in a grid search: GridSearchCV over head settings, frozen backbone.

Three arms run the same grid (8 candidates x 5 folds, plus the refit) on hymenoptera train:

- sktransfer with ``cache=True`` (the default): each image is decoded and embedded once, then every
  fit of every fold and candidate trains its head on the cached embeddings;
- sktransfer with ``cache=False``: every fit decodes the images and runs the backbone (once a fit: the
  model is the same as with the cache, only the reuse across fits is lost);
- plain skorch: ``NeuralNetClassifier`` on a frozen timm EfficientNet-Lite0 (the packaged weights) with
  a new head, fed through ``skorch.helper.SliceDataset`` -- what one writes without sktransfer.

Run with ``python -m benchmarks.gridsearch_cache [--full]`` or through ``python -m benchmarks``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._harness import SHARED_DATA, headline, markdown_table, read_hymenoptera, timed, write_result

BATCH = 32
SETTINGS = {
    # Cache off and skorch decode and embed every image in every fit (skorch: every epoch) of all 41 fits,
    # which bounds the run on 2 CPU cores: hence one epoch per fit (all 245 images: about 10 minutes unloaded).
    "full": dict(n_images=None, cv=5, epochs=1, grid={"lr": [3e-3, 1e-2], "head_hidden": [(), (64,)],
                                                       "dropout": [0.0, 0.3]}),
    "quick": dict(n_images=16, cv=3, epochs=1, grid={"lr": [3e-3, 1e-2], "head_hidden": [(), (64,)]}),
}


def load_images(n_images: int | None) -> tuple[list[str], np.ndarray]:
    """Hymenoptera train paths and labels; ``n_images`` draws a seeded, class-balanced subsample."""
    if not (SHARED_DATA / "hymenoptera").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'hymenoptera'} is absent: this benchmark needs hymenoptera.")
    paths, labels = read_hymenoptera("train")
    labels = np.asarray(labels)
    if n_images is None:
        return paths, labels
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(labels == c), n_images // 2, replace=False) for c in np.unique(labels)
    ]))
    return [paths[i] for i in keep], labels[keep]


def sktransfer_search(X, y, setting: dict, cache: bool):
    """GridSearchCV over a frozen-backbone ``PretrainedImageClassifier``."""
    from sklearn.model_selection import GridSearchCV

    from sktransfer import PretrainedImageClassifier, feature_cache

    feature_cache.clear()
    # C=None: every head trains by mini-batch epochs, as skorch's does, so lr and dropout take effect.
    estimator = PretrainedImageClassifier(freeze_layers="all", C=None, max_epochs=setting["epochs"],
                                          batch_size=BATCH, cache=cache, random_state=0)
    return GridSearchCV(estimator, setting["grid"], cv=setting["cv"], n_jobs=1).fit(X, y)


class FrozenBackboneClassifier(nn.Module):
    """The plain skorch arm's module: a frozen backbone (kept in eval mode) and a new head."""

    def __init__(self, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        from sktransfer._backbones import _packaged_efficientnet_lite0

        # timm.create_model("tf_efficientnet_lite0") with the packaged ImageNet weights loaded.
        self.backbone = _packaged_efficientnet_lite0(pretrained=True).requires_grad_(False).eval()
        width = self.backbone.num_features
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.head = nn.Sequential(*layers, nn.Linear(width, 2))

    def train(self, mode: bool = True) -> FrozenBackboneClassifier:
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.backbone(x)
        return self.head(features)


def skorch_search(X, y, setting: dict):
    """The same grid with plain skorch: images decoded and embedded in every epoch of every fit."""
    import timm
    from PIL import Image
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import LabelEncoder
    from skorch import NeuralNetClassifier
    from skorch.helper import SliceDataset

    config = timm.data.resolve_model_data_config(FrozenBackboneClassifier().backbone)
    transform = timm.data.create_transform(**config, is_training=False)

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            with Image.open(X[i]) as image:
                return transform(image.convert("RGB")), 0

    torch.manual_seed(0)
    net = NeuralNetClassifier(FrozenBackboneClassifier, criterion=torch.nn.CrossEntropyLoss,
                              optimizer=torch.optim.AdamW,
                              optimizer__weight_decay=0.01, max_epochs=setting["epochs"], batch_size=BATCH,
                              train_split=None, iterator_train__shuffle=True, verbose=0)
    grid = {"lr": setting["grid"]["lr"], "module__hidden": [h[0] if h else 0 for h in setting["grid"]["head_hidden"]]}
    if "dropout" in setting["grid"]:
        grid["module__dropout"] = setting["grid"]["dropout"]
    y_int = LabelEncoder().fit_transform(y).astype(np.int64)
    return GridSearchCV(net, grid, cv=setting["cv"], n_jobs=1).fit(SliceDataset(Images()), y_int)


def run(quick: bool, out_dir: Path) -> Path:
    """Time the three arms on one grid and write ``gridsearch_cache.md``."""
    setting = SETTINGS["quick" if quick else "full"]
    X, y = load_images(setting["n_images"])
    n_candidates = int(np.prod([len(v) for v in setting["grid"].values()]))
    n_fits = n_candidates * setting["cv"] + 1
    arms, times = {}, {}
    for name, search in [("sktransfer, cache on", lambda: sktransfer_search(X, y, setting, cache=True)),
                         ("sktransfer, cache off", lambda: sktransfer_search(X, y, setting, cache=False)),
                         ("plain skorch, frozen timm backbone", lambda: skorch_search(X, y, setting))]:
        record: dict = {}
        with timed(record):
            arms[name] = search()
        times[name] = record["seconds"]
        print(f"[gridsearch_cache] {name}: {times[name]:.1f} s", file=sys.stderr, flush=True)
    cached, uncached = arms["sktransfer, cache on"], arms["sktransfer, cache off"]
    fastest = times["sktransfer, cache on"]
    rows = [{"arm": name, "wall s": t, "x slower than cache on": t / fastest,
             "best CV accuracy": arms[name].best_score_, "best params": str(arms[name].best_params_)}
            for name, t in times.items()]
    score_gap = float(np.max(np.abs(cached.cv_results_["mean_test_score"] - uncached.cv_results_["mean_test_score"])))
    agree = cached.best_params_ == uncached.best_params_
    speedup = times["plain skorch, frozen timm backbone"] / fastest
    body = (
        headline(f"grid search {speedup:.0f}x faster than plain skorch with the feature cache "
                 f"({fastest:.0f} s vs {times['plain skorch, frozen timm backbone']:.0f} s)")
        + f"\nMode: {'quick' if quick else 'full'}. {len(X)} hymenoptera train images; GridSearchCV over "
        f"{setting['grid']} ({n_candidates} candidates) x {setting['cv']} folds + refit = {n_fits} fits of "
        f"{setting['epochs']} epoch(s), batch {BATCH}, n_jobs=1; backbone EfficientNet-Lite0 (packaged weights), "
        "frozen (freeze_layers=\"all\").\n\n"
        + markdown_table(rows)
        + f"\n\nCache on vs off: best_params_ {'agree' if agree else 'DIFFER'} "
        f"({cached.best_params_} vs {uncached.best_params_}); largest difference of a candidate's mean CV "
        f"accuracy {score_gap:.2g}. The skorch arm's head has no feature standardisation (sktransfer's has), "
        "so its scores differ; it is there for the time.\n"
    )
    return write_result("gridsearch_cache", "Grid search with the frozen-feature cache", body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS))

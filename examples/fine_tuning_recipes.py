"""Three fine-tuning recipes on the hymenoptera images (ants vs bees), train -> val.

1. Feature extraction: the backbone stays frozen (``freeze_layers="all"``); only the head trains,
   on embeddings computed once and cached.
2. Partial fine-tuning: the head trains alone for 2 epochs, then one more top backbone block opens
   every 2 epochs (gradual unfreezing, at most 3 blocks in 8 epochs), with early stopping, a cosine
   schedule with warm-up, a higher rate for the head and light augmentation. Training the head first
   keeps a random head's large early gradients out of the pretrained blocks.
3. Full fine-tuning: every block trains, with a smaller rate for the lower blocks (``layer_decay``).

Accuracy and wall time are printed per recipe, and each recipe's ``plot_history()`` figure is
saved as a PNG in the folder given on the command line (a new temporary folder by default)::

    python examples/fine_tuning_recipes.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from sktransfer import PretrainedImageClassifier, load_image_folder  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hymenoptera"

COMMON = {"backbone": "efficientnet_lite0", "batch_size": 32, "random_state": 0}
FINE_TUNING = {"lr_schedule": "cosine", "warmup": 0.1, "augment": "light", "early_stopping": True,
               "validation_fraction": 0.15, "patience": 3}
RECIPES = {
    "feature_extraction": {"freeze_layers": "all", "lr": 1e-3, "max_epochs": 20},
    "partial_fine_tuning": {"freeze_layers": "all", "unfreeze_every": 2, "lr": 1e-4, "head_lr": 1e-3,
                            "max_epochs": 8, **FINE_TUNING},
    "full_fine_tuning": {"freeze_layers": "none", "lr": 1e-4, "head_lr": 1e-3, "layer_decay": 0.8,
                         "max_epochs": 8, **FINE_TUNING},
}


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    X_train, y_train = load_image_folder(DATA / "train")
    X_val, y_val = load_image_folder(DATA / "val")
    print(f"{len(X_train)} training and {len(X_val)} validation images; figures go to {out_dir}")
    for name, params in RECIPES.items():
        clf = PretrainedImageClassifier(**COMMON, **params)
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        accuracy = clf.score(X_val, y_val)
        total_s = time.perf_counter() - start
        clf.plot_history().savefig(out_dir / f"{name}.png", dpi=100)
        print(
            f"{name:>20}: val accuracy {accuracy:.3f}  fit {fit_s:6.1f} s  fit+predict {total_s:6.1f} s  "
            f"epochs {clf.n_epochs_} (best {clf.best_epoch_}), {clf.n_backbone_blocks_} backbone blocks",
            flush=True,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sktransfer_recipes_")))

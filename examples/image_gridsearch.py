"""Grid search over an image classifier's head on the hymenoptera ants/bees photos.

The backbone stays frozen (``freeze_layers="all"``), so its embeddings are computed once, on the
first grid point, and served from sktransfer's feature cache to every other fold and grid point:
the whole search costs little more than one fit. With ``n_jobs > 1`` give the classifier a
``cache_dir`` so that worker processes share the embeddings on disk.

Needs ``../shared/data/hymenoptera`` beside the repository. Run it with
``python examples/image_gridsearch.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sklearn.metrics import classification_report
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold
from sklearn.pipeline import Pipeline

from sktransfer import PretrainedImageClassifier, feature_cache, load_image_folder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Two sub-grids, so that every point differs: a linear head is solved to convergence (only its penalty C
# matters); a hidden-layer head trains by mini-batch epochs (its dropout and learning rate matter).
PARAM_GRID = [
    {"classifier__C": [0.1, 1.0, "auto"]},
    {
        "classifier__head_hidden": [(256,)],
        "classifier__dropout": [0.0, 0.3],
        "classifier__lr": [1e-3, 3e-3],
        "classifier__max_epochs": [30],
    },
]


def main(data: Path = DATA) -> None:
    root = data / "hymenoptera"
    if not root.is_dir():
        sys.exit(f"image_gridsearch: {root} is absent; put the hymenoptera data set "
                 "(train/ and val/, one folder per class) there to run this example.")
    X_train, y_train = load_image_folder(root / "train")
    X_val, y_val = load_image_folder(root / "val")
    pipeline = Pipeline([("classifier", PretrainedImageClassifier(random_state=0))])
    search = GridSearchCV(pipeline, PARAM_GRID, cv=StratifiedKFold(3, shuffle=True, random_state=0), n_jobs=1)
    n_points = len(ParameterGrid(PARAM_GRID))
    print(f"GridSearchCV: {3 * n_points} fits (3 folds x {n_points} grid points) on {len(X_train)} training images")
    start = time.perf_counter()
    search.fit(X_train, y_train)
    print(f"search done in {time.perf_counter() - start:.0f} s; {len(feature_cache)} embeddings in the cache")
    print(f"best_params_: {search.best_params_}")
    print(f"best cross-validated accuracy: {search.best_score_:.3f}")
    results = search.cv_results_
    for params, score, seconds in zip(results["params"], results["mean_test_score"], results["mean_fit_time"]):
        print(f"  {score:.3f}  (fit {seconds:.1f} s)  {params}")
    print(f"\nval accuracy of the refitted best pipeline: {search.score(X_val, y_val):.3f}")
    print(classification_report(y_val, search.predict(X_val), digits=3))


if __name__ == "__main__":
    main()

"""Optuna search over an image classifier's head on the hymenoptera ants/bees photos, pruning bad trials.

``OptunaSearchCV`` (optuna-integration) samples the learning rate and dropout of a hidden-layer head; with
``enable_pruning=True`` it trains each fold's model one epoch per ``partial_fit`` call and stops a trial
whose mean fold score after an epoch is worse than the median of the earlier trials at that epoch
(``MedianPruner``). The backbone stays frozen, so its embeddings are computed once, in the first trial, and
every later epoch of every trial trains only the head on the cached embeddings. The folds' shuffling
seed is an int: pruning splits the data again at every epoch, and a ``RandomState`` would give other
folds each time (optuna-integration #317).

Needs ``pip install sktransfer[optuna]`` and ``../shared/data/hymenoptera`` beside the repository. Run it
with ``python examples/optuna_search.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sklearn.model_selection import StratifiedKFold

from sktransfer import PretrainedImageClassifier, load_image_folder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(data: Path = DATA, n_trials: int = 12) -> None:
    root = data / "hymenoptera"
    if not root.is_dir():
        sys.exit(f"optuna_search: {root} is absent; put the hymenoptera data set "
                 "(train/ and val/, one folder per class) there to run this example.")
    try:
        import optuna
        from optuna.distributions import FloatDistribution
        from optuna_integration import OptunaSearchCV
    except ImportError:
        sys.exit("optuna_search: needs optuna and optuna-integration: pip install sktransfer[optuna]")
    X_train, y_train = load_image_folder(root / "train")
    X_val, y_val = load_image_folder(root / "val")
    # C=None: the head trains by epochs in fit as in partial_fit, so the refitted model is the one the trials scored.
    classifier = PretrainedImageClassifier(head_hidden=(256,), C=None, max_epochs=10, random_state=0)
    space = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5)}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
    search = OptunaSearchCV(classifier, space, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                            enable_pruning=True, max_iter=classifier.max_epochs, n_trials=n_trials, study=study,
                            scoring="neg_log_loss")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"OptunaSearchCV: {n_trials} trials x 3 folds x up to {classifier.max_epochs} epochs on "
          f"{len(X_train)} training images")
    start = time.perf_counter()
    search.fit(X_train, y_train)
    print(f"search done in {time.perf_counter() - start:.0f} s")
    for trial in search.trials_:
        epochs = len(trial.intermediate_values)
        print(f"  {trial.state.name:8}  after {epochs:2} epochs: log-loss {-trial.intermediate_values[epochs - 1]:.3f}"
              f"  lr={trial.params['lr']:.2g} dropout={trial.params['dropout']:.2f}")
    print(f"best_params_: {search.best_params_}; cross-validated log-loss {-search.best_score_:.3f}")
    print(f"val accuracy of the refitted best classifier: {search.best_estimator_.score(X_val, y_val):.3f}")


if __name__ == "__main__":
    main()

"""Optuna: OptunaSearchCV over the estimators and pipelines, pruning (partial_fit, OptunaPruning), Dask, no leaks.

Every fit of ``Tracked`` records the planted row ids (the first pixel of each image) it trained on or scored, so
a test can check that each trial's estimator saw only its own fold's training rows, at every epoch.
"""

from __future__ import annotations

import pickle
import sys
import threading

import numpy as np
import pytest
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sktransfer import OptunaPruning, PretrainedImageClassifier

optuna = pytest.importorskip("optuna", reason="needs optuna (pip install sktransfer[optuna])")
pytest.importorskip("optuna_integration", reason="needs optuna-integration (pip install sktransfer[optuna])")
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna_integration import OptunaSearchCV  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
CV = StratifiedKFold(2, shuffle=True, random_state=0)
_LOG: list[tuple[int, str, frozenset]] = []
_LOCK = threading.Lock()


class Tracked(PretrainedImageClassifier):
    """Records, per instance, the planted row ids of every training call and every scoring."""

    def _record(self, kind: str, X) -> None:
        with _LOCK:
            _LOG.append((id(self), kind, frozenset(np.asarray(X)[:, 0, 0, 0].tolist())))

    def fit(self, X, y, **kwargs):
        self._record("train", X)
        return super().fit(X, y, **kwargs)

    def partial_fit(self, X, y, **kwargs):
        self._record("train", X)
        return super().partial_fit(X, y, **kwargs)

    def _outputs(self, X):
        self._record("score", X)
        return super()._outputs(X)


@pytest.fixture
def planted(image_data):
    X, y = image_data
    X = X.copy()
    X[:, 0, 0, 0] = np.arange(len(X))
    _LOG.clear()
    return X, y


@pytest.fixture
def params(tiny_image_params) -> dict:
    # C=None: the head trains by epochs in fit as in partial_fit, so pruned and refitted models are alike.
    return {**tiny_image_params, "C": None, "max_epochs": 2}


def _check_no_leak(X, y, epochs: int | None = None) -> int:
    """Every estimator trained on one fold's training rows only (every epoch), and scored that fold's test rows."""
    folds = {frozenset(X[train, 0, 0, 0].tolist()): frozenset(X[test, 0, 0, 0].tolist())
             for train, test in CV.split(X, y)}
    by_estimator: dict[int, list] = {}
    for key, kind, rows in _LOG:
        by_estimator.setdefault(key, []).append((kind, rows))
    for calls in by_estimator.values():
        trained = {rows for kind, rows in calls if kind == "train"}
        assert len(trained) == 1, "an estimator trained on different rows in different epochs"
        train = trained.pop()
        assert train in folds, "an estimator trained on rows that are no fold's training rows"
        assert {rows for kind, rows in calls if kind == "score"} == {folds[train]}
        if epochs is not None:
            assert len([kind for kind, _ in calls if kind == "train"]) <= epochs
    return len(by_estimator)


def test_search_cv_prunes_a_classifier_through_partial_fit(planted, params):
    X, y = planted
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler({"lr": [1e-7, 1e-3]}),
                                pruner=optuna.pruners.ThresholdPruner(lower=-0.6))
    search = OptunaSearchCV(Tracked(**params), {"lr": CategoricalDistribution([1e-7, 1e-3])}, cv=CV,
                            enable_pruning=True, max_iter=2, n_trials=2, study=study, scoring="neg_log_loss",
                            refit=False, error_score="raise")
    search.fit(X, y)
    states = {trial.params["lr"]: trial for trial in search.trials_}
    assert states[1e-7].state is TrialState.PRUNED and list(states[1e-7].intermediate_values) == [0]
    assert states[1e-3].state is TrialState.COMPLETE and list(states[1e-3].intermediate_values) == [0, 1]
    assert states[1e-3].intermediate_values[1] > states[1e-3].intermediate_values[0] > -0.6  # it learns epoch by epoch
    assert search.best_params_ == {"lr": 1e-3}
    # One estimator per trial and fold, each trained one epoch per partial_fit on its fold's rows only.
    assert _check_no_leak(X, y, epochs=2) == 4


def test_search_cv_over_a_pipeline_fits_every_fold_on_its_own_rows(planted, params):
    X, y = planted
    pipe = make_pipeline(FunctionTransformer(), Tracked(**params))
    space = {"tracked__lr": FloatDistribution(1e-3, 1e-1, log=True)}
    search = OptunaSearchCV(pipe, space, cv=CV, n_trials=2, n_jobs=2, random_state=0, scoring="neg_log_loss",
                            error_score="raise")
    search.fit(X, y)
    assert search.n_trials_ == 2 and search.best_estimator_.predict(X).shape == (len(X),)
    del _LOG[-2:]  # the refit of the best pipeline on every row, and its prediction
    assert _check_no_leak(X, y) == 4
    with pytest.raises(ValueError, match="partial_fit"):  # a Pipeline has no partial_fit: prune with OptunaPruning
        OptunaSearchCV(pipe, space, enable_pruning=True).fit(X, y)


def _search(params, X, y, n_jobs: int):
    # The points are enqueued: with n_jobs > 1 optuna reseeds the sampler in each thread, so a seeded sampler
    # draws other points; an enqueued trial runs exactly once whichever thread or worker takes it.
    study = optuna.create_study(direction="maximize")
    for lr in (1e-4, 3e-3):
        study.enqueue_trial({"lr": lr})
    search = OptunaSearchCV(PretrainedImageClassifier(**params), {"lr": FloatDistribution(1e-4, 1e-2, log=True)},
                            cv=CV, n_trials=2, n_jobs=n_jobs, study=study, scoring=_scorer, refit=False,
                            error_score="raise")
    return search.fit(X, y)


def _scorer(estimator, X, y) -> float:
    from distributed import get_worker

    try:
        _WHERE.append(get_worker().address)
    except ValueError:
        _WHERE.append("local")
    return -log_loss(y, estimator.predict_proba(X), labels=estimator.classes_)


_WHERE: list[str] = []


def _results(search) -> list[tuple[float, float]]:
    return sorted((trial.params["lr"], trial.value) for trial in search.trials_)


def test_results_do_not_depend_on_the_number_of_workers_or_a_dask_cluster(image_data, params):
    distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (pip install sktransfer[dask])")
    from joblib import parallel_backend

    X, y = image_data
    serial = _search(params, X, y, n_jobs=1)
    threads = _search(params, X, y, n_jobs=2)  # fits in threads take turns at torch's global generator
    cluster_options = {"n_workers": 2, "threads_per_worker": 1, "processes": False, "dashboard_address": None}
    with distributed.LocalCluster(**cluster_options) as cluster, distributed.Client(cluster), \
            parallel_backend("dask"):
        _WHERE.clear()
        on_dask = _search(params, X, y, n_jobs=1)
    assert "local" not in _WHERE and len(_WHERE) == 4  # every fold was fitted and scored on a worker
    values = np.array([value for _, value in _results(serial)])
    assert np.ptp(values) > 1e-3  # the trials differ, so the best trial is a real check
    for other in (threads, on_dask):
        assert other.best_params_ == serial.best_params_
        np.testing.assert_allclose(other.best_score_, serial.best_score_, rtol=1e-5)
        np.testing.assert_allclose(_results(other), _results(serial), rtol=1e-5)


# ------------------------------------------------------------------------- OptunaPruning in an objective
def _objective(X, y, params):
    def objective(trial):
        model = PretrainedImageClassifier(**params, lr=trial.suggest_float("lr", 1e-7, 1.0, log=True),
                                          early_stopping=True, validation_fraction=0.25)
        with OptunaPruning(trial, monitor="valid_loss"):
            model.fit(X, y)
        return float(min(model.history_[:, "valid_loss"]))
    return objective


def _run_study(objective, storage=None, client=None):
    study = optuna.create_study(storage=storage, direction="minimize",
                                pruner=optuna.pruners.ThresholdPruner(upper=0.68))
    for lr in (1e-7, 1e-3, 1e-2):
        study.enqueue_trial({"lr": lr})
    if client is None:
        study.optimize(objective, n_trials=3)
    else:
        client.gather([client.submit(study.optimize, objective, n_trials=n, pure=False) for n in (1, 2)])
    return {trial.params["lr"]: (trial.state, dict(trial.intermediate_values), trial.value) for trial in study.trials}


def test_pruning_callback_prunes_the_same_trials_serially_and_on_a_dask_cluster(image_data, params):
    distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (pip install sktransfer[dask])")
    from optuna_integration import DaskStorage

    X, y = image_data
    objective = _objective(X, y, params)
    serial = _run_study(objective)
    assert serial[1e-7][0] is TrialState.PRUNED and list(serial[1e-7][1]) == [0]
    assert all(serial[lr][0] is TrialState.COMPLETE and len(serial[lr][1]) == 2 for lr in (1e-3, 1e-2))
    cluster_options = {"n_workers": 2, "threads_per_worker": 1, "processes": False, "dashboard_address": None}
    with distributed.LocalCluster(**cluster_options) as cluster, distributed.Client(cluster) as client:
        on_dask = _run_study(objective, DaskStorage(client=client), client)
    assert on_dask.keys() == serial.keys()
    for lr, (state, values, value) in serial.items():
        assert on_dask[lr][0] is state
        np.testing.assert_allclose(list(on_dask[lr][1].values()), list(values.values()), rtol=1e-5)


def test_pruning_callback_checks_its_use(image_data, params, monkeypatch):
    X, y = image_data
    study = optuna.create_study(direction="minimize")
    with pytest.raises(TypeError, match="optuna.trial.Trial"):
        OptunaPruning(study)
    with pytest.raises(ValueError, match="monitor must be one of"):
        OptunaPruning(study.ask(), monitor="accuracy")
    with pytest.raises(ValueError, match="direction='maximize'"):
        OptunaPruning(study.ask(), monitor="valid_acc")
    trial = study.ask()
    with pytest.raises(ValueError, match="early_stopping=True"), OptunaPruning(trial):
        PretrainedImageClassifier(**params).fit(X, y)
    with pytest.warns(UserWarning, match="C=None"), OptunaPruning(trial):
        PretrainedImageClassifier(**{**params, "C": "auto"}).fit(X, y)
    with OptunaPruning(trial, monitor="train_loss") as pruning:
        model = PretrainedImageClassifier(**params).fit(X, y)
    assert pruning.n_reported_ == 2 and list(trial.storage.get_trial(trial._trial_id).intermediate_values) == [0, 1]
    model.fit(X, y)  # outside the block: nothing more is reported
    assert pruning.n_reported_ == 2
    assert pickle.loads(pickle.dumps(model)).predict(X).shape == (len(X),)  # no trial stays on the model
    monkeypatch.setitem(sys.modules, "optuna_integration.skorch", None)
    with pytest.raises(ImportError, match=r"pip install sktransfer\[optuna\]"):
        OptunaPruning(trial)


def test_example_exits_clearly_without_shared_data(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "optuna_search.py"
    spec = importlib.util.spec_from_file_location("example_optuna_search", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with pytest.raises(SystemExit, match="is absent"):
        example.main(tmp_path)

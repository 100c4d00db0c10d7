"""Grid search on a dask.distributed cluster of worker processes, through joblib's dask backend."""

from __future__ import annotations

import numpy as np
import pytest
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV

from sktransfer import PretrainedImageClassifier

distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (pip install sktransfer[dask])")


def test_grid_search_on_a_dask_cluster_matches_n_jobs_1(tiny_image_params, image_data):
    X, y = image_data
    params = {k: v for k, v in tiny_image_params.items() if k != "max_epochs"}  # the converged head has no epochs
    estimator = PretrainedImageClassifier(**params, device="cpu")
    grid = {"C": [1e-4, 10.0]}
    serial = GridSearchCV(estimator, grid, cv=2, scoring="neg_log_loss", n_jobs=1).fit(X, y)
    scores = serial.cv_results_["mean_test_score"]
    assert abs(scores[0] - scores[1]) > 1e-3  # the grid points differ, so best_params_ is a real check
    cluster_options = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    with distributed.LocalCluster(**cluster_options) as cluster, distributed.Client(cluster) as client, \
            parallel_backend("dask"):
        on_dask = GridSearchCV(estimator, grid, cv=2, scoring="neg_log_loss").fit(X, y)
        used = client.run(_ran_sktransfer)
    assert on_dask.best_params_ == serial.best_params_
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], atol=1e-4)
    assert list(used.values()) == [True, True], used  # the fits really ran in both worker processes
    np.testing.assert_array_equal(on_dask.predict(X), serial.predict(X))


def _ran_sktransfer() -> bool:
    import sys

    return "sktransfer._training" in sys.modules

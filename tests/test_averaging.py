"""Weight averaging: the fitted weights are the average torch's swa_utils define of the weights training went
through (recorded here by a callback), under early stopping too; it warns where nothing trains by epochs, and the
average is what pickles, ``save``/``load`` and searches keep."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback

from sktransfer import PretrainedImageClassifier, load
from sktransfer._averaging import SOUP_SIZE, ema_decay
from sktransfer._planner import FitPlanner


class Recorder(Callback):
    """The trainable weights at the start, after every training step and at each epoch's end (with its scores)."""

    def _weights(self, net) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in net.module_.named_parameters() if p.requires_grad}

    def on_train_begin(self, net, **kwargs):
        self.start, self.steps, self.epochs, self.scores = self._weights(net), [], [], []

    def on_batch_end(self, net, training=True, **kwargs):
        if training:
            self.steps.append(self._weights(net))

    def on_epoch_end(self, net, **kwargs):
        self.epochs.append(self._weights(net))
        self.scores.append(net.history[-1].get("valid_loss"))


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    recorder, callbacks = Recorder(), FitPlanner._callbacks
    monkeypatch.setattr(FitPlanner, "_callbacks", lambda self, *a, **k: [*callbacks(self, *a, **k),
                                                                         ("recorder", recorder)])
    return recorder


PARAMS = {"backbone": "test_efficientnet", "pretrained": False, "random_state": 0, "C": None, "freeze_layers": -1,
          "batch_size": 4, "lr": 0.01}


def _mean(weights: list[dict]) -> dict:
    return {name: torch.stack([w[name] for w in weights]).mean(0) for name in weights[0]}


def _assert_fitted_weights(clf, expected: dict) -> None:
    fitted = dict(clf.net_.module_.named_parameters())
    assert expected and set(expected) <= set(fitted)
    for name, value in expected.items():
        torch.testing.assert_close(fitted[name].detach(), value, rtol=1e-5, atol=1e-6, msg=name)


def test_swa_is_the_mean_of_the_second_half_epochs_weights(image_data, recorder):
    clf = PretrainedImageClassifier(**PARAMS, max_epochs=4, weight_averaging="swa").fit(*image_data)
    assert len(recorder.epochs) == 4
    _assert_fitted_weights(clf, _mean(recorder.epochs[2:]))
    fitted = dict(clf.net_.module_.named_parameters())
    assert not all(torch.equal(fitted[name], value) for name, value in recorder.epochs[-1].items())


def test_ema_follows_the_recurrence_from_the_initial_weights(image_data, recorder):
    clf = PretrainedImageClassifier(**PARAMS, max_epochs=2, weight_averaging="ema").fit(*image_data)
    decay = ema_decay(2 * math.ceil(len(image_data[1]) / 4))
    assert len(recorder.steps) == 8 and 0 < decay < 1
    average = dict(recorder.start)
    for weights in recorder.steps:
        average = {name: decay * average[name] + (1 - decay) * weights[name] for name in average}
    _assert_fitted_weights(clf, average)


def test_ema_under_early_stopping_is_the_average_at_the_best_epoch(image_data, recorder):
    clf = PretrainedImageClassifier(**PARAMS, max_epochs=5, early_stopping=True, validation_fraction=0.25,
                                    patience=1, weight_averaging="ema").fit(*image_data)
    steps_per_epoch = len(recorder.steps) // clf.n_epochs_  # 3: the stopping epoch ends before the recorder's
    decay = ema_decay(5 * steps_per_epoch)
    average = dict(recorder.start)
    for weights in recorder.steps[:clf.best_epoch_ * steps_per_epoch]:
        average = {name: decay * average[name] + (1 - decay) * weights[name] for name in average}
    _assert_fitted_weights(clf, average)


def test_the_soup_is_the_mean_of_the_best_epochs_under_early_stopping(image_data, recorder):
    clf = PretrainedImageClassifier(**PARAMS, max_epochs=6, early_stopping=True, validation_fraction=0.25,
                                    patience=6, weight_averaging="soup").fit(*image_data)
    best = sorted(np.argsort(recorder.scores, kind="stable")[:SOUP_SIZE])
    assert len(recorder.epochs) == 6
    assert dict(clf.net_.callbacks_)["weight_averaging"].soup_epochs_ == [i + 1 for i in best]
    _assert_fitted_weights(clf, _mean([recorder.epochs[i] for i in best]))


def test_the_soup_without_validation_averages_the_last_epochs(image_data, recorder):
    clf = PretrainedImageClassifier(**PARAMS, max_epochs=4, weight_averaging="soup").fit(*image_data)
    _assert_fitted_weights(clf, _mean(recorder.epochs[-SOUP_SIZE:]))


def test_trained_batchnorm_statistics_are_recomputed_for_the_average(image_data):
    clf = PretrainedImageClassifier(**{**PARAMS, "freeze_layers": -2}, max_epochs=2, freeze_bn_stats=False,
                                    weight_averaging="swa").fit(*image_data)
    norms = [m for m in clf.net_.module_.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.weight.requires_grad]
    # update_bn resets the statistics and takes one pass (4 batches); training alone would have counted 8
    assert norms and all(int(m.num_batches_tracked) == 4 for m in norms)
    assert np.isfinite(clf.predict_proba(image_data[0])).all()


def test_it_warns_where_nothing_trains_by_epochs(image_data):
    params = {"backbone": "test_efficientnet", "pretrained": False, "random_state": 0}
    with pytest.warns(UserWarning, match=r"weight_averaging='ema' has no effect: the linear head .* solved"):
        PretrainedImageClassifier(**params, weight_averaging="ema").fit(*image_data)
    with pytest.warns(UserWarning, match=r"weight_averaging='swa' has no effect: one epoch"):
        PretrainedImageClassifier(**params, C=None, max_epochs=1, weight_averaging="swa").fit(*image_data)
    with pytest.raises(ValueError, match="weight_averaging"):
        PretrainedImageClassifier(**params, weight_averaging="mean").fit(*image_data)


def test_pickle_and_save_keep_the_averaged_weights(image_data, tmp_path):
    X, y = image_data
    clf = PretrainedImageClassifier(**PARAMS, max_epochs=2, weight_averaging="ema").fit(X, y)
    assert dict(clf.net_.callbacks_)["weight_averaging"].average_ is None  # no copy of the weights is kept
    expected = clf.predict_proba(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    clf.save(tmp_path / "model")
    np.testing.assert_allclose(load(tmp_path / "model").predict_proba(X), expected, rtol=1e-5, atol=1e-6)


def test_grid_search_over_the_averaging(image_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(PretrainedImageClassifier(**PARAMS, max_epochs=1),
                              {"weight_averaging": [None, "ema"]}, cv=2).fit(*image_data)
    assert [p["weight_averaging"] for p in search.cv_results_["params"]] == [None, "ema"]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()

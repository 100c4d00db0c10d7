"""The learning-rate range test: ``lr_find`` and ``lr="find"`` (fastai's ``lr_find``)."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from sklearn.utils.validation import check_is_fitted

from sktransfer import LRFinderResult, PretrainedImageClassifier, PretrainedTextRegressor, _lr_finder, load
from sktransfer._lr_finder import suggest_rate
from sktransfer._net import TransferNetClassifier

ITER = 20  # the fewest batches lr_find accepts: enough for the curve's shape, cheap on a tiny backbone


def _planted_loss(rate: float, optimum: float) -> float:
    """Flat, then falling linearly in log(rate) over the three decades around ``optimum``, flat again, and
    diverging from 100 times ``optimum`` on."""
    fall = np.clip((1.5 - np.log10(rate / optimum)) / 3, 0, 1)
    return float(0.2 + fall + (rate > 100 * optimum) * 1e3 * rate / optimum)


@pytest.mark.parametrize("optimum", [1e-5, 1e-3, 1e-1])
def test_the_suggestion_lies_on_the_falling_stretch_of_a_planted_curve(optimum):
    rates = np.geomspace(1e-7, 10, 100)
    losses = np.array([_planted_loss(rate, optimum) for rate in rates])
    assert optimum / 10 < suggest_rate(rates, losses) < optimum * 10


def _plant(monkeypatch, optimum: float) -> None:
    """Training steps whose loss is the planted curve at the rate of the optimizer's first group."""

    def train_step(net, batch, **fit_params):
        loss = _planted_loss(net.optimizer_.param_groups[0]["lr"], optimum)
        return {"loss": torch.tensor(loss), "y_pred": torch.zeros(len(batch[1]), 2)}

    monkeypatch.setattr(TransferNetClassifier, "train_step", train_step)


@pytest.mark.parametrize("optimum", [1e-5, 1e-2])
def test_the_range_test_ramps_smooths_stops_and_suggests_a_planted_optimum(monkeypatch, image_data,
                                                                            tiny_image_params, optimum):
    _plant(monkeypatch, optimum)
    clf = PretrainedImageClassifier(**tiny_image_params, C=None, batch_size=4)
    result = clf.lr_find(*image_data, start_lr=1e-7, end_lr=10.0, num_iter=100)
    np.testing.assert_allclose(result.rates[:3], 1e-7 * (1e8 ** (1 / 99)) ** np.arange(3))
    np.testing.assert_allclose(result.raw_losses, [_planted_loss(r, optimum) for r in result.rates], rtol=1e-6)
    assert result.losses[0] == pytest.approx(result.raw_losses[0])  # the bias correction
    assert len(result.rates) < 100 and result.losses[-1] > 4 * result.losses.min()  # stopped on divergence
    assert optimum / 10 < result.suggestion < optimum * 10


def test_a_test_that_diverges_at_once_asks_for_a_lower_start(monkeypatch, image_data, tiny_image_params):
    _plant(monkeypatch, 1e-9)
    with pytest.raises(ValueError, match="lower start_lr"):
        PretrainedImageClassifier(**tiny_image_params, C=None).lr_find(*image_data, num_iter=ITER)


@pytest.mark.parametrize("options, match", [
    ({"start_lr": 1.0, "end_lr": 1e-3}, "must be below end_lr"),
    ({"start_lr": 0.0}, "start_lr must be a positive finite number"),
    ({"end_lr": float("inf")}, "end_lr must be a positive finite number"),
    ({"num_iter": 5}, "num_iter must be an int of at least 20"),
    ({"num_iter": 50.0}, "num_iter must be an int"),
])
def test_bad_ranges_are_refused_before_any_work(image_data, tiny_image_params, options, match):
    with pytest.raises(ValueError, match=match):
        PretrainedImageClassifier(**tiny_image_params, C=None).lr_find(*image_data, **options)


def test_a_solved_head_has_no_rate_to_find(image_data, tiny_image_params):
    clf = PretrainedImageClassifier(**tiny_image_params)
    with pytest.raises(ValueError, match="set C=None"):
        clf.lr_find(*image_data, num_iter=ITER)
    with pytest.warns(UserWarning, match="lr='find' has no effect"):
        clf.set_params(lr="find").fit(*image_data)
    assert clf.lr_finder_ is None and clf.C_ is not None
    fixed = PretrainedImageClassifier(**tiny_image_params, C=None, head_lr=1e-3)
    with pytest.raises(ValueError, match="no rate would rise"):
        fixed.lr_find(*image_data, num_iter=ITER)
    with pytest.warns(UserWarning, match="lr='find' has no effect: no backbone weight trains and head_lr"):
        fixed.set_params(lr="find").fit(*image_data)
    assert fixed.lr_finder_ is None and fixed.lr_["head"] == 1e-3


def _snapshot(clf) -> dict:
    state = {"vars": dict(vars(clf)), "numpy": np.random.get_state()[1].copy(), "python": random.getstate(),
             "torch": torch.random.get_rng_state().clone()}
    if hasattr(clf, "net_"):
        state["weights"] = {k: v.clone() for k, v in clf.net_.module_.state_dict().items()}
        state["grad"] = {n: p.requires_grad for n, p in clf.net_.module_.named_parameters()}
        state["training"] = [m.training for m in clf.net_.module_.modules()]
    return state


def _assert_unchanged(clf, before: dict) -> None:
    after = _snapshot(clf)
    assert after["vars"].keys() == before["vars"].keys()
    assert all(after["vars"][k] is v for k, v in before["vars"].items())
    np.testing.assert_array_equal(after["numpy"], before["numpy"])
    assert after["python"] == before["python"] and torch.equal(after["torch"], before["torch"])
    if "weights" in before:
        assert all(torch.equal(after["weights"][k], v) for k, v in before["weights"].items())
        assert after["grad"] == before["grad"] and after["training"] == before["training"]


@pytest.mark.parametrize("warm_start", [False, True])
def test_lr_find_leaves_the_estimator_as_it_was_before_and_after_a_fit(image_data, tiny_image_params, warm_start):
    rng = np.random.RandomState(0)
    clf = PretrainedImageClassifier(**{**tiny_image_params, "random_state": rng}, freeze_layers=-1, batch_size=8,
                                    warm_start=warm_start)
    before, rng_state = _snapshot(clf), rng.get_state()[1].copy()
    assert clf.lr_find(*image_data, num_iter=ITER).suggestion > 0
    _assert_unchanged(clf, before)
    np.testing.assert_array_equal(rng.get_state()[1], rng_state)
    with pytest.raises(Exception, match="not fitted"):
        check_is_fitted(clf)
    clf.fit(*image_data)
    proba, before = clf.predict_proba(image_data[0]), _snapshot(clf)
    after_fit = clf.lr_find(*image_data, num_iter=ITER)  # fastai #3658: after a fit too
    assert np.isfinite(after_fit.losses).all()
    _assert_unchanged(clf, before)
    np.testing.assert_array_equal(clf.predict_proba(image_data[0]), proba)


def test_lr_find_trains_with_the_suggested_rate(monkeypatch, image_data, tiny_image_params):
    monkeypatch.setattr(_lr_finder, "NUM_ITER", ITER)
    params = {**tiny_image_params, "freeze_layers": -1, "batch_size": 8}
    found = PretrainedImageClassifier(**params, lr="find").fit(*image_data)
    result = found.lr_finder_
    assert isinstance(result, LRFinderResult) and len(result.rates) <= ITER
    assert found.lr_ == {"head": result.suggestion, "backbone": result.suggestion, "warmup": 0.1}
    assert found.history_[-1, "lr"] == pytest.approx(result.suggestion)
    alone = PretrainedImageClassifier(**params).lr_find(*image_data, num_iter=ITER)  # the same test outside fit
    np.testing.assert_allclose(alone.losses, result.losses, rtol=1e-5)
    assert alone.suggestion == result.suggestion
    # The test leaves no trace: fitting the suggestion by hand trains the same model.
    by_hand = PretrainedImageClassifier(**params, lr=result.suggestion, warmup=0.1).fit(*image_data)
    np.testing.assert_allclose(by_hand.predict_proba(image_data[0]), found.predict_proba(image_data[0]), atol=1e-6)


def test_head_lr_stays_fixed_while_the_backbone_rate_ramps(monkeypatch, text_data, tiny_text_params):
    monkeypatch.setattr(_lr_finder, "NUM_ITER", ITER)
    X, y = text_data
    targets = np.array([1.0 if label == "pos" else -1.0 for label in y])
    reg = PretrainedTextRegressor(**tiny_text_params, freeze_layers=-1, head_lr=5e-3, lr="find").fit(X, targets)
    assert reg.lr_["head"] == 5e-3 and reg.lr_["backbone"] == reg.lr_finder_.suggestion
    head = {id(p) for p in reg.net_.module_.head.parameters()}
    rates = {id(p): group.get("initial_lr", group["lr"]) for group in reg.net_.optimizer_.param_groups
             for p in group["params"]}
    assert {rates[i] for i in head} == {5e-3}
    assert set(rates.values()) - {5e-3} == {reg.lr_finder_.suggestion}


def test_the_backbone_ramps_even_where_head_lr_equals_the_start_rate(monkeypatch, text_data, tiny_text_params):
    # the head's groups are told by their part, not by their rate: equal rates once merged head and backbone
    monkeypatch.setattr(_lr_finder, "NUM_ITER", ITER)
    seen = []
    batch_end = _lr_finder._RangeTest.on_batch_end

    def spy(self, net, **kwargs):
        head = {id(p) for p in net.module_.head.parameters()}
        seen.append({("head" if id(p) in head else "backbone"): group["lr"] for group in net.optimizer_.param_groups
                     for p in group["params"]})
        return batch_end(self, net, **kwargs)

    monkeypatch.setattr(_lr_finder._RangeTest, "on_batch_end", spy)
    X, y = text_data
    targets = np.array([1.0 if label == "pos" else -1.0 for label in y])
    PretrainedTextRegressor(**tiny_text_params, freeze_layers=-1, head_lr=_lr_finder.START_LR).lr_find(X, targets)
    assert seen[-1]["head"] == _lr_finder.START_LR
    assert seen[-1]["backbone"] > 100 * _lr_finder.START_LR


def test_a_found_rate_survives_pickling_and_save_load(monkeypatch, image_data, tiny_image_params, tmp_path):
    monkeypatch.setattr(_lr_finder, "NUM_ITER", ITER)
    clf = PretrainedImageClassifier(**tiny_image_params, C=None, lr="find").fit(*image_data)
    proba = clf.predict_proba(image_data[0])
    for copy in (pickle.loads(pickle.dumps(clf)), load(clf.save(tmp_path / "model"))):
        np.testing.assert_allclose(copy.predict_proba(image_data[0]), proba, atol=1e-6)
        assert copy.lr_ == clf.lr_ and copy.lr_finder_.suggestion == clf.lr_finder_.suggestion
        np.testing.assert_array_equal(copy.lr_finder_.losses, clf.lr_finder_.losses)


def test_plot_marks_the_suggestion():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    rates = np.geomspace(1e-7, 10, 100)
    losses = np.array([_planted_loss(rate, 1e-3) for rate in rates])
    result = LRFinderResult(rates=rates, losses=losses, raw_losses=losses, suggestion=suggest_rate(rates, losses))
    ax = result.plot()
    curve, marker = ax.get_lines()
    assert ax.get_xscale() == "log" and len(curve.get_xdata()) == 100
    assert marker.get_xdata()[0] == result.suggestion
    assert "suggestion" in ax.get_legend().get_texts()[1].get_text()

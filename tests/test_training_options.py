"""Each training option changes what training does (every test fails if its option is ignored)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from torch import nn

import sktransfer._net
from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier


def _images(n_per_class: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    dark = rng.integers(0, 80, size=(n_per_class, 32, 32, 3), dtype=np.uint8)
    light = rng.integers(170, 255, size=(n_per_class, 32, 32, 3), dtype=np.uint8)
    return np.concatenate([dark, light]), np.array(["dark"] * n_per_class + ["light"] * n_per_class)


def _clf(tiny_image_params, **params) -> PretrainedImageClassifier:
    # C=None: the head trains by epochs, as these options need (a converged head has no epochs).
    return PretrainedImageClassifier(**{**tiny_image_params, "num_workers": 0, "C": None, **params})


# ------------------------------------------------------------------------ early stopping and split
def test_early_stopping_stops_on_plateau_and_restores_best_weights(tiny_image_params, image_data):
    X, y = image_data
    # A rate far too high for SGD makes the validation loss jump around, so the best epoch is early.
    params = {"early_stopping": True, "validation_fraction": 0.25, "patience": 2, "optimizer": "sgd", "lr": 5.0}
    clf = _clf(tiny_image_params, max_epochs=30, **params).fit(X, y)
    assert clf.n_epochs_ < 30
    assert clf.n_epochs_ == clf.best_epoch_ + 2
    for key in ("train_loss", "valid_loss", "valid_acc", "lr", "dur"):
        assert len(clf.history_[:, key]) == clf.n_epochs_
    # Same seed, stopped at the best epoch: the kept weights are that epoch's, not the last one's.
    at_best = _clf(tiny_image_params, max_epochs=clf.best_epoch_, **params).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), at_best.predict_proba(X), atol=1e-6)
    last = clf.net_.module_.head.layers[-1].weight
    assert torch.equal(last, at_best.net_.module_.head.layers[-1].weight)


# ------------------------------------------------------------------------------------ time limit
def _stopping_clock(monkeypatch, batches: int) -> None:
    """The time limit's clock reads "in time" for ``batches`` training batches, then "past the deadline"."""
    import types

    import sktransfer._callbacks

    readings = iter([float("-inf")] * batches)
    monkeypatch.setattr(sktransfer._callbacks, "time",
                        types.SimpleNamespace(monotonic=lambda: next(readings, float("inf"))))


def test_time_limit_stops_training_after_the_batch_past_it(tiny_image_params, image_data, monkeypatch):
    X, y = image_data  # 16 rows, batches of 4: 4 batches an epoch
    _stopping_clock(monkeypatch, batches=5)
    clf = _clf(tiny_image_params, max_epochs=50, batch_size=4, time_limit=60).fit(X, y)
    assert clf.time_limit_reached_ and clf.n_epochs_ == 1  # the unfinished second epoch's row is dropped
    assert len(clf.history_[:, "train_loss"]) == 1
    unlimited = _clf(tiny_image_params, max_epochs=3, batch_size=4).fit(X, y)
    assert not unlimited.time_limit_reached_ and unlimited.n_epochs_ == 3


def test_time_limit_keeps_the_best_epoch_under_early_stopping(tiny_image_params, image_data, monkeypatch):
    X, y = image_data
    _stopping_clock(monkeypatch, batches=13)  # 3 batches an epoch (12 training rows): stops in epoch 5
    params = {"early_stopping": True, "validation_fraction": 0.25, "patience": 50, "batch_size": 4}
    clf = _clf(tiny_image_params, max_epochs=50, time_limit=60, **params).fit(X, y)
    assert clf.time_limit_reached_ and clf.n_epochs_ == 4
    assert clf.best_epoch_ == int(np.argmin(clf.history_[:, "valid_loss"])) + 1


def test_time_limit_is_honoured_on_the_wall_clock(tiny_image_params, image_data):
    import time

    X, y = image_data
    start = time.monotonic()
    clf = _clf(tiny_image_params, max_epochs=100_000, batch_size=4, time_limit=2.0).fit(X, y)
    assert clf.time_limit_reached_ and 1 <= clf.n_epochs_ < 100_000
    assert time.monotonic() - start < 2.0 + 10.0  # one batch past it, and the model's set-up


def test_validation_split_is_stratified_and_seeded(tiny_image_params):
    X, y = _images(15)
    X, y = X[:20], y[:20]  # 15 dark, 5 light
    valid_sets = []
    for seed in (0, 0, 1):
        clf = _clf(tiny_image_params, early_stopping=True, validation_fraction=0.4, max_epochs=1, random_state=seed)
        clf.fit(X, y)
        valid = clf.net_.train_split.keywords["valid_ds"]
        assert np.bincount(valid.y).tolist() == [6, 2]
        valid_sets.append(valid.X["features"])
    np.testing.assert_array_equal(valid_sets[0], valid_sets[1])
    assert not np.array_equal(valid_sets[0], valid_sets[2])


def test_refit_full_trains_again_on_all_the_data_for_the_best_epoch_count(tiny_image_params, image_data):
    X, y = image_data
    params = {"early_stopping": True, "validation_fraction": 0.25, "patience": 2, "optimizer": "sgd", "lr": 5.0,
              "max_epochs": 30}
    searched = _clf(tiny_image_params, **params).fit(X, y)
    clf = _clf(tiny_image_params, refit_full=True, **params).fit(X, y)
    assert clf.validation_history_[:, "valid_loss"] == searched.history_[:, "valid_loss"]
    assert clf.n_epochs_ == clf.best_epoch_ == searched.best_epoch_ < 30
    assert "valid_loss" not in clf.history_[-1] and clf.net_.train_split is None
    on_all = _clf(tiny_image_params, **{**params, "early_stopping": False, "max_epochs": searched.best_epoch_})
    np.testing.assert_allclose(clf.predict_proba(X), on_all.fit(X, y).predict_proba(X), atol=1e-6)
    assert not hasattr(clf.set_params(refit_full=False).fit(X, y), "validation_history_")


@pytest.mark.parametrize("change", [{"freeze_layers": -1}, {"adapter": "lora"}])
def test_refit_full_with_warm_start_starts_again_from_the_previous_fit(tiny_image_params, image_data, change):
    X, y = image_data
    base = _clf(tiny_image_params, freeze_layers=-1, lr=1e-3, max_epochs=1).fit(X, y)
    refit = copy.deepcopy(base).set_params(warm_start=True, early_stopping=True, refit_full=True,
                                           validation_fraction=0.25, patience=1, max_epochs=3, **change).fit(X, y)
    plain = copy.deepcopy(base).set_params(warm_start=True, max_epochs=refit.best_epoch_, **change).fit(X, y)
    for name, tensor in plain.net_.module_.state_dict().items():
        torch.testing.assert_close(refit.net_.module_.state_dict()[name], tensor, msg=name)


# ------------------------------------------------------------------------------ rates and schedules
def test_lr_schedules_change_the_recorded_lr(tiny_image_params, image_data):
    X, y = image_data  # 16 samples, batch 8: 2 steps per epoch, 8 steps in 4 epochs
    params = {"max_epochs": 4, "batch_size": 8, "lr": 0.01}
    cosine = _clf(tiny_image_params, lr_schedule="cosine", **params).fit(X, y).history_[:, "lr"]
    warm = _clf(tiny_image_params, lr_schedule="linear", warmup=0.5, **params).fit(X, y).history_[:, "lr"]
    np.testing.assert_allclose(cosine, [0.01 * 0.5 * (1 + np.cos(np.pi * s / 8)) for s in (0, 2, 4, 6)])
    np.testing.assert_allclose(warm, [0.0025, 0.0075, 0.01, 0.005])  # ramps over 4 steps, then decays
    constant = _clf(tiny_image_params, **params).fit(X, y)
    assert constant.history_[:, "lr"] == [0.01] * 4
    assert "lr_schedule" not in dict(constant.net_.callbacks_)


def _group_rates(clf) -> dict[str, tuple[float, float]]:
    """(lr, weight_decay) of every parameter of the fitted module, by name."""
    groups = {id(p): (g["lr"], g["weight_decay"]) for g in clf.net_.optimizer_.param_groups for p in g["params"]}
    return {name: groups[id(p)] for name, p in clf.net_.module_.named_parameters() if id(p) in groups}


def test_layer_decay_head_lr_and_no_weight_decay_on_1d_params(tiny_image_params, image_data):
    X, y = image_data
    clf = _clf(tiny_image_params, freeze_layers="none", lr=0.01, layer_decay=0.5, head_lr=0.1,
               weight_decay=0.05, max_epochs=1).fit(X, y)
    rates = _group_rates(clf)
    blocks = clf.blocks_
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        for name in block:
            assert rates[f"encoder.{name}"][0] == pytest.approx(0.01 * 0.5 ** (len(blocks) - i))
    params = dict(clf.net_.module_.named_parameters())
    for name, (lr, weight_decay) in rates.items():
        if name.startswith("head."):
            assert lr == pytest.approx(0.1)
        assert weight_decay == (0.0 if params[name].ndim == 1 else 0.05)


def test_sgd_has_momentum(tiny_image_params, image_data):
    X, y = image_data
    sgd = _clf(tiny_image_params, optimizer="sgd", max_epochs=1).fit(X, y).net_.optimizer_
    assert isinstance(sgd, torch.optim.SGD)
    assert all(group["momentum"] == 0.9 for group in sgd.param_groups)


# ------------------------------------------------------------------------------ gradual unfreezing
def test_unfreeze_every_opens_one_more_block_from_the_top(tiny_image_params, image_data):
    X, y = image_data
    frozen = _clf(tiny_image_params, max_epochs=3, batch_size=8).fit(X, y)
    gradual = _clf(tiny_image_params, max_epochs=3, batch_size=8, unfreeze_every=1).fit(X, y)
    n = len(gradual.blocks_)
    assert gradual.history_[:, "n_frozen_blocks"] == [n, n - 1, n - 2]
    encoder = dict(gradual.net_.module_.encoder.named_parameters())
    initial = dict(frozen.net_.module_.encoder.named_parameters())
    for i, block in enumerate(gradual.blocks_):
        opened = i >= n - 2
        assert all(encoder[name].requires_grad == opened for name in block)
        # The opened blocks trained (they moved away from the shared initial weights); the others did not.
        moved = any(not torch.equal(encoder[name], initial[name]) for name in block)
        assert moved == opened, f"block {i}"


def test_gradual_unfreezing_from_a_partial_freeze(tiny_image_params, image_data):
    X, y = image_data
    clf = _clf(tiny_image_params, freeze_layers=-1, unfreeze_every=2, max_epochs=4, batch_size=8).fit(X, y)
    n = len(clf.blocks_)
    assert clf.history_[:, "n_frozen_blocks"] == [n - 1, n - 1, n - 2, n - 2]


# ---------------------------------------------------------------------------------- head and loss
def test_head_hidden_dropout_and_label_smoothing_reach_the_module(tiny_image_params, image_data):
    X, y = image_data
    clf = _clf(tiny_image_params, head_hidden=(16,), dropout=0.5, label_smoothing=0.2, max_epochs=1).fit(X, y)
    layers = list(clf.net_.module_.head.layers)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(clf.n_features_out_, 16), (16, 2)]
    assert any(isinstance(m, nn.ReLU) for m in layers)
    assert [m.p for m in layers if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert clf.net_.criterion_.label_smoothing == 0.2
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))  # dropout is off at predict time


def test_class_weight_changes_the_loss(tiny_image_params, image_data):
    X, y = image_data
    X, y = X[:12], y[:12]  # 8 dark, 4 light
    params = {"max_epochs": 3, "lr": 1e-3}  # far from saturated probabilities
    plain = _clf(tiny_image_params, **params).fit(X, y)
    balanced = _clf(tiny_image_params, class_weight="balanced", **params).fit(X, y)
    only_light = _clf(tiny_image_params, class_weight={"dark": 0.0, "light": 1.0}, **params).fit(X, y)
    assert plain.history_[0, "train_loss"] != pytest.approx(balanced.history_[0, "train_loss"])
    # Weighted towards "light": its mean probability rises, with "balanced" less so than with the dict.
    p_light = [clf.predict_proba(X)[:, 1].mean() for clf in (plain, balanced, only_light)]
    assert p_light[0] < p_light[1] < p_light[2]


# ------------------------------------------------------------------------------- sample weights
@pytest.fixture
def metadata_routing():
    sklearn.set_config(enable_metadata_routing=True)
    yield
    sklearn.set_config(enable_metadata_routing=False)


def test_sample_weight_is_routed_through_pipeline_and_grid_search(tiny_image_params, metadata_routing):
    # Every image appears twice, once with its label and once with the other: the weights decide.
    X, y = _images(8)
    flipped = np.where(y == "dark", "light", "dark")
    X2, y2 = np.concatenate([X, X]), np.concatenate([y, flipped])
    trust_true = np.r_[np.ones(16), np.zeros(16)]
    clf = _clf(tiny_image_params, max_epochs=15, lr=0.05).set_fit_request(sample_weight=True)
    clf.set_score_request(sample_weight=True)
    pipe = Pipeline([("clf", clf)])
    np.testing.assert_array_equal(pipe.fit(X2, y2, sample_weight=trust_true).predict(X), y)
    np.testing.assert_array_equal(pipe.fit(X2, y2, sample_weight=1 - trust_true).predict(X), flipped)
    folds = KFold(2, shuffle=True, random_state=0)  # so that no test fold has only zero weights
    search = GridSearchCV(pipe, {"clf__lr": [0.05]}, cv=folds, error_score="raise")
    search.fit(X2, y2, sample_weight=1 - trust_true)
    np.testing.assert_array_equal(search.predict(X), flipped)


# ------------------------------------------------------------------------------------ augmentation
class CountingAugment:
    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return image


def test_augment_applies_to_training_batches_only(tiny_image_params, image_data):
    X, y = image_data
    augment = CountingAugment()
    clf = _clf(tiny_image_params, augment=augment, early_stopping=True, validation_fraction=0.25, max_epochs=2)
    clf.fit(X, y)
    assert augment.calls == 12 * 2  # the 12 training images each epoch, never the 4 validation ones
    assert not clf.features_cached_
    clf.predict_proba(X)
    assert augment.calls == 24

    light = _clf(tiny_image_params, augment="light", max_epochs=1).fit(X, y)
    np.testing.assert_array_equal(light.predict_proba(X), light.predict_proba(X))


# ------------------------------------------------------------------------- verbosity and seeding
def test_verbose_prints_progress_and_silent_prints_nothing(tiny_image_params, image_data, capsys):
    X, y = image_data
    _clf(tiny_image_params, verbose=0, early_stopping=True, validation_fraction=0.25).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    _clf(tiny_image_params, verbose=1, early_stopping=True, validation_fraction=0.25).fit(X, y)
    out = capsys.readouterr().out
    assert "epoch" in out and "train_loss" in out and "valid_loss" in out


def test_random_state_makes_fits_reproducible(tiny_image_params, image_data):
    X, y = image_data
    params = {"freeze_layers": -1, "augment": "light", "early_stopping": True, "validation_fraction": 0.25,
              "max_epochs": 1}
    first = _clf(tiny_image_params, **params).fit(X, y).predict_proba(X)
    second = _clf(tiny_image_params, **params).fit(X, y).predict_proba(X)
    other = _clf(tiny_image_params, **{**params, "random_state": 1}).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


# ---------------------------------------------------------------------------- gradient accumulation
def test_grad_accum_steps_gives_the_same_weights(tiny_text_params, text_data, monkeypatch):
    X, y = text_data
    splits = []
    chunks = sktransfer._net._chunks

    def counting_chunks(Xb, yb, k):
        splits.append(k)
        return chunks(Xb, yb, k)

    monkeypatch.setattr(sktransfer._net, "_chunks", counting_chunks)
    params = {**tiny_text_params, "freeze_layers": "all", "C": None, "batch_size": 8, "lr": 0.05,
              "lr_schedule": "cosine", "max_epochs": 3}
    one = PretrainedTextClassifier(**params).fit(X, y)
    assert set(splits) == {1}
    splits.clear()
    two = PretrainedTextClassifier(**params, grad_accum_steps=2).fit(X, y)
    assert set(splits) == {2} and len(splits) == 3 * 3  # one optimizer step per batch of 8
    np.testing.assert_array_equal(one.history_[:, "lr"], two.history_[:, "lr"])
    for (name, a), b in zip(one.net_.module_.head.named_parameters(), two.net_.module_.head.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


# --------------------------------------------------------------------------------------- plotting
def test_plot_history_draws_loss_accuracy_and_lr(tiny_image_params, image_data):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = image_data
    clf = _clf(tiny_image_params, early_stopping=True, validation_fraction=0.25, max_epochs=3).fit(X, y)
    fig = clf.plot_history()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "learning rate"]
    loss_ax = fig.axes[0]
    labels = {line.get_label(): line for line in loss_ax.get_lines()}
    np.testing.assert_allclose(labels["train_loss"].get_ydata(), clf.history_[:, "train_loss"])
    np.testing.assert_allclose(labels["valid_loss"].get_ydata(), clf.history_[:, "valid_loss"])
    best = labels[f"best epoch ({clf.best_epoch_})"]
    assert list(best.get_xdata()) == [clf.best_epoch_] * 2
    plt.close(fig)

    no_valid = _clf(tiny_image_params, max_epochs=2).fit(X, y).plot_history()
    assert [ax.get_title() for ax in no_valid.axes] == ["loss", "learning rate"]
    plt.close(no_valid)


def test_plot_history_without_matplotlib_names_the_extra(monkeypatch):
    import sys

    from sktransfer._plotting import plot_history

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install sktransfer\[plot\]"):
        plot_history([], 1)


def test_head_standardisation_never_blows_up_a_feature_constant_in_the_sample():
    from sktransfer._heads import Head

    features = torch.randn(32, 8)
    features[:, 3] = 0.0  # a sparse feature that happens to be all zero in the sample
    head = Head(8, 2)
    head.fit_standardization(features)
    assert float(head.scale[3]) >= 0.1 * float(head.scale[[0, 1, 2, 4, 5, 6, 7]].mean()) * 0.5
    standardized = (torch.ones(1, 8) - head.mean) / head.scale
    assert float(standardized.abs().max()) < 100


def test_time_limit_warns_where_the_head_is_solved(tiny_image_params, image_data):
    X, y = image_data
    with pytest.warns(UserWarning, match="time_limit=5 has no effect: the linear head"):
        clf = PretrainedImageClassifier(**tiny_image_params, time_limit=5).fit(X, y)
    assert not clf.time_limit_reached_

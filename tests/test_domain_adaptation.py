"""Domain adaptation: unlabelled target rows in fit, skada's conventions, scorers, splitters and pipelines."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedImageRegressor,
    PretrainedTextClassifier,
    merge_domains,
)
from sktransfer._domain import MASKED_LABEL, SOURCE_DOMAIN, TARGET_DOMAIN
from sktransfer._domain_losses import coral_loss, dann_ramp, mmd_loss, reverse_gradient
from sktransfer._streams.data import SourceTargetSampler

CAST = np.array([1.0, -0.4, -0.6])  # the target domain's colour cast: redder, less green and blue


def shifted_images(n: int, seed: int, cast: float):
    """Two classes told apart by the orientation of a bright diagonal stripe; ``cast`` shifts the colours."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(110, 25, size=(n, 32, 32, 3))
    i = np.arange(32)
    X[y == 0] += 60 * (np.abs(i[:, None] - i[None, :]) < 4)[None, :, :, None]
    X[y == 1] += 60 * (np.abs(i[:, None] + i[None, :] - 31) < 4)[None, :, :, None]
    return np.clip(X + cast * CAST, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def shift():
    X_source, y_source = shifted_images(48, 0, 0.0)
    X_target, _ = shifted_images(48, 1, 40.0)
    X_test, y_test = shifted_images(64, 2, 40.0)
    X, y, sample_domain = merge_domains(X_source, y_source, X_target)
    return X, y, sample_domain, X_test, y_test


# Frozen tiny backbone (cached embeddings); the head's hidden layer is the aligned one.
DA_PARAMS = {"backbone": "test_efficientnet", "pretrained": False, "max_epochs": 20, "batch_size": 16, "lr": 1e-3,
             "head_hidden": (64,)}


@pytest.fixture
def da_params():
    return dict(DA_PARAMS)


def _clf(params, **overrides):
    return PretrainedImageClassifier(**{**params, **overrides})


def _target_accuracy(shift, params, seeds=(0, 1)):
    X, y, sample_domain, X_test, y_test = shift
    return np.mean([PretrainedImageClassifier(**params, random_state=seed).fit(X, y, sample_domain=sample_domain)
                    .score(X_test, y_test) for seed in seeds])


@pytest.fixture(scope="module")
def source_only_accuracy(shift):
    return _target_accuracy(shift, DA_PARAMS)


# ------------------------------------------------------------------ adaptation helps
@pytest.mark.parametrize("method", ["coral", "mmd"])
def test_adaptation_beats_source_only_on_a_colour_shift(shift, da_params, source_only_accuracy, method):
    # Frozen backbone: the head's hidden layer is aligned. Source only: about 0.80 on the shifted target.
    adapted = _target_accuracy(shift, {**da_params, "domain_adaptation": method})
    assert adapted >= source_only_accuracy + 0.05, (method, adapted, source_only_accuracy)


def test_dann_trains_a_discriminator_behind_a_reversed_gradient(shift, da_params):
    X, y, sample_domain, X_test, _ = shift
    clf = _clf(da_params, domain_adaptation="dann", max_epochs=2, random_state=0)
    clf.fit(X, y, sample_domain=sample_domain)
    discriminator = clf.net_.discriminator_
    assert all(p.grad is None for p in discriminator.parameters())  # released after fit
    # The discriminator trained (its weights moved from their seeded start) and the features moved with it.
    torch.manual_seed(0)
    baseline = _clf(da_params, domain_adaptation="dann", adaptation_weight=0.0, max_epochs=2,
                                         random_state=0).fit(X, y, sample_domain=sample_domain)
    assert not torch.equal(discriminator.layers[0].weight, baseline.net_.discriminator_.layers[0].weight)
    assert not np.allclose(clf.predict_proba(X_test), baseline.predict_proba(X_test))


def test_losses_and_ramp():
    torch.manual_seed(0)
    a, b = torch.randn(64, 8), torch.randn(64, 8)
    for loss in (coral_loss, mmd_loss):
        assert loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
        assert loss(a, b + 2.0).item() > 10 * loss(a, b).item() > 0
    assert coral_loss(a, a * 3).item() > 0.5  # covariances differ, means do not
    x = torch.ones(3, requires_grad=True)
    reverse_gradient(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))
    assert dann_ramp(0.0) == 0.0 and dann_ramp(0.5) > 0.98 and dann_ramp(1.0) < 1.0


def test_batches_mix_source_and_target_rows():
    torch.manual_seed(0)
    order = list(SourceTargetSampler(10, 3))
    assert len(order) == 20
    assert all(i < 10 for i in order[0::2]) and all(i >= 10 for i in order[1::2])
    assert sorted(order[0::2]) == list(range(10))  # every source row once per epoch


def test_masked_rows_never_reach_the_classification_loss(shift, da_params, monkeypatch):
    X, y, sample_domain, _, _ = shift
    seen = []

    class Recording(torch.nn.CrossEntropyLoss):
        def forward(self, y_pred, y_true):
            seen.append(y_true.detach().clone())
            return super().forward(y_pred, y_true)

    clf = _clf(da_params, domain_adaptation="coral", max_epochs=1, random_state=0)
    monkeypatch.setattr(type(clf), "_criterion", lambda self: Recording(reduction="none"))
    clf.fit(X, y, sample_domain=sample_domain)
    labels = torch.cat(seen)
    assert len(labels) == int((sample_domain > 0).sum()) and (labels >= 0).all()
    assert clf.n_target_rows_ == int((sample_domain < 0).sum()) == 48


def test_adaptation_weight_zero_ignores_what_the_target_rows_are(shift, da_params):
    # The target rows only enter through the adaptation term: with weight 0, other target images change nothing.
    X, y, sample_domain, X_test, _ = shift
    other = X.copy()
    other[sample_domain < 0] = 255 - other[sample_domain < 0]
    params = {**da_params, "domain_adaptation": "mmd", "adaptation_weight": 0.0, "max_epochs": 1, "random_state": 0}
    first = PretrainedImageClassifier(**params).fit(X, y, sample_domain=sample_domain).predict_proba(X_test)
    second = PretrainedImageClassifier(**params).fit(other, y, sample_domain=sample_domain).predict_proba(X_test)
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_without_adaptation_target_rows_are_left_out(shift, da_params):
    X, y, sample_domain, X_test, _ = shift
    source = sample_domain > 0
    params = {**da_params, "max_epochs": 2, "random_state": 0}
    with_targets = PretrainedImageClassifier(**params).fit(X, y, sample_domain=sample_domain)
    alone = PretrainedImageClassifier(**params).fit(X[source], y[source])
    np.testing.assert_allclose(with_targets.predict_proba(X_test), alone.predict_proba(X_test), atol=1e-6)


# ------------------------------------------------------------------ every way of training
@pytest.mark.parametrize("options", [
    {"freeze_layers": "none", "domain_adaptation": "dann"},
    {"freeze_layers": -1, "domain_adaptation": "coral"},
    {"adapter": "lora", "domain_adaptation": "mmd"},
])
def test_text_fine_tuning_and_lora_adapt(tiny_text_params, options):
    pos, neg = ["good film", "great acting", "love it"], ["bad film", "awful acting", "hate it"]
    X_source, y_source = (pos + neg) * 2, (["pos"] * 3 + ["neg"] * 3) * 2
    X_target = ["nice story", "wonderful plot", "boring story", "terrible plot"]
    X, y, sample_domain = merge_domains(X_source, y_source, X_target)
    assert y.tolist()[-4:] == [None] * 4
    clf = PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 1, "batch_size": 4}, **options)
    clf.fit(X, y, sample_domain=sample_domain)
    assert clf.n_target_rows_ == 4 and clf.n_trainable_backbone_params_ > 0
    assert set(clf.predict(X_target).tolist()) <= {"pos", "neg"}
    # Without sample_domain, the None labels mark the target rows.
    clf.fit(X, y)
    assert clf.n_target_rows_ == 4 and clf.classes_.tolist() == ["neg", "pos"]


def test_partial_fine_tuning_of_images_with_the_frozen_prefix_cache(shift, da_params, tmp_path):
    X, y, sample_domain, X_test, _ = shift
    clf = _clf(da_params, head_hidden=(), freeze_layers=-1, max_epochs=1,
                                    domain_adaptation="mmd", random_state=0)
    clf.fit(X, y, sample_domain=sample_domain)
    assert clf.prefix_cached_ and clf.n_target_rows_ == 48
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X_test), clf.predict_proba(X_test), atol=1e-6)


# ------------------------------------------------------------------ routing and skada
@pytest.fixture(autouse=True)
def _keep_sklearn_config():
    with sklearn.config_context():  # importing skada enables metadata routing for the whole process
        yield


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):  # importing skada turns it on for good
        yield


def test_sample_domain_is_routed_through_pipeline_and_grid_search(shift, da_params, routing):
    X, y, sample_domain, _, _ = shift
    clf = _clf(da_params, domain_adaptation="coral", max_epochs=1, random_state=0)
    pipe = make_pipeline(clf).fit(X, y, sample_domain=sample_domain)
    assert pipe[-1].n_target_rows_ == 48
    search = GridSearchCV(clf, {"adaptation_weight": [2.0]}, cv=2).fit(X, y, sample_domain=sample_domain)
    assert search.best_estimator_.n_target_rows_ == 48
    # A sample_domain that contradicts the labels reaches fit, and fails there.
    with pytest.raises(ValueError, match="labels at 48 target rows"):
        make_pipeline(clf).fit(X, y, sample_domain=sample_domain[::-1])


def test_grid_search_with_skada_scorers_and_splitter(shift, da_params, routing):
    skada_metrics = pytest.importorskip("skada.metrics")
    from skada.model_selection import SourceTargetShuffleSplit

    X, y, sample_domain, _, _ = shift
    clf = _clf(da_params, domain_adaptation="mmd", max_epochs=1, random_state=0)
    scoring = {"entropy": skada_metrics.PredictionEntropyScorer(), "iw": skada_metrics.ImportanceWeightedScorer()}
    search = GridSearchCV(clf, {"adaptation_weight": [0.0, 1.0]}, scoring=scoring, refit="entropy",
                          cv=SourceTargetShuffleSplit(n_splits=2, test_size=0.25, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ImportanceWeightedScorer: densities of raw pixels underflow
        search.fit(X, y, sample_domain=sample_domain)
    for name in scoring:
        assert np.isfinite(search.cv_results_[f"mean_test_{name}"]).all()
    # The weight reaches the fits: the adapted candidate's predictions, so its scores, differ from the other's.
    entropy = search.cv_results_["mean_test_entropy"]
    assert entropy[0] != entropy[1]
    assert search.best_estimator_.n_target_rows_ == 48


def test_skada_pipeline_on_frozen_embeddings(shift, routing):
    skada = pytest.importorskip("skada")
    X, y, sample_domain, X_test, y_test = shift
    embedder = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False)
    pipe = skada.make_da_pipeline(embedder, skada.CORALAdapter(), LogisticRegression(max_iter=1000))
    pipe.fit(X, y, sample_domain=sample_domain)
    assert pipe.predict(X_test).shape == (64,)
    assert pipe.score(X_test, y_test) > 0.5


def test_conventions_match_skada():
    utils = pytest.importorskip("skada._utils")
    assert MASKED_LABEL == utils._DEFAULT_MASKED_TARGET_CLASSIFICATION_LABEL
    assert (SOURCE_DOMAIN, TARGET_DOMAIN) == (utils._DEFAULT_SOURCE_DOMAIN_LABEL, utils._DEFAULT_TARGET_DOMAIN_LABEL)


def test_predict_needs_nothing_extra_and_accepts_skada_arguments(shift, da_params):
    X, y, sample_domain, X_test, y_test = shift
    clf = _clf(da_params, domain_adaptation="coral", max_epochs=1, random_state=0)
    clf.fit(X, y, sample_domain=sample_domain)
    np.testing.assert_array_equal(clf.predict(X_test), clf.predict(X_test, sample_domain=np.full(64, -2)))
    assert clf.score(X, y) == clf.score(X[:48], y[:48])  # masked rows do not count
    assert clf.score(X_test, y_test, sample_domain=np.full(64, -2), allow_source=True) == clf.score(X_test, y_test)


# ------------------------------------------------------------------ bad input
@pytest.fixture
def small(shift):
    X, y, sample_domain, _, _ = shift
    return X[40:56], y[40:56], sample_domain[40:56]  # 8 source rows, 8 target rows


@pytest.mark.parametrize("mutate, error, match", [
    (lambda X, y, d: (X, np.where(d < 0, 0, y), None), ValueError, "no target rows"),
    (lambda X, y, d: (X, np.full(len(y), -1), None), ValueError, "Every row of X is unlabelled"),
    (lambda X, y, d: (X, np.where(d < 0, 1, y), d), ValueError, "labels at 8 target rows"),
    (lambda X, y, d: (X, y, d[:-1]), ValueError, "one domain per row of X"),
    (lambda X, y, d: (X, y, d + 0.5), TypeError, "sample_domain must be integers"),
    (lambda X, y, d: (X, y, np.full(len(y), 1)), ValueError, "masked labels .* at 8 source rows"),
])
def test_bad_domain_input(small, da_params, mutate, error, match):
    X, y, sample_domain = mutate(*small)
    clf = _clf(da_params, domain_adaptation="mmd", max_epochs=1)
    with pytest.raises(error, match=match):
        clf.fit(X, y, sample_domain=sample_domain)


def test_bad_adaptation_parameters(small, da_params):
    X, y, sample_domain = small
    with pytest.raises(ValueError, match="domain_adaptation"):
        _clf(da_params, domain_adaptation="adversarial").fit(X, y, sample_domain=sample_domain)
    with pytest.raises(ValueError, match="adaptation_weight"):
        _clf(da_params, domain_adaptation="mmd", adaptation_weight=-1).fit(X, y)
    with pytest.raises(ValueError, match="head_hidden=\\(256,\\)"):
        _clf(da_params, head_hidden=(), domain_adaptation="coral").fit(X, y)


def test_regressors_refuse_target_rows(small, tiny_image_params):
    X, y, sample_domain = small
    with pytest.raises(ValueError, match="does not do domain adaptation"):
        PretrainedImageRegressor(**tiny_image_params).fit(X, np.arange(16.0), sample_domain=sample_domain)
    regressor = PretrainedImageRegressor(**tiny_image_params).fit(X, np.arange(16.0), sample_domain=np.ones(16, int))
    assert regressor.predict(X).shape == (16,)


def test_merge_domains_keeps_arrays_and_marks_labels():
    X, y, sample_domain = merge_domains(np.zeros((2, 4, 4, 3)), [3, 4], np.ones((3, 4, 4, 3)))
    assert X.shape == (5, 4, 4, 3) and y.tolist() == [3, 4, -1, -1, -1]
    assert sample_domain.tolist() == [1, 1, -2, -2, -2]
    X, y, _ = merge_domains(["a.png"], ["cat"], np.array(["b.png"]))
    assert X == ["a.png", "b.png"] and y.tolist() == ["cat", None]


def test_patterns_that_freeze_every_weight_are_refused_clearly(shift, da_params):
    """freeze_layers as patterns that match every parameter leaves nothing to align (not only 'all')."""
    X, y, sample_domain, _, _ = shift
    clf = _clf({**da_params, "head_hidden": ()}, freeze_layers=["*"], domain_adaptation="coral", max_epochs=1)
    with pytest.raises(ValueError, match="no backbone weight trains and the head has no hidden layer"):
        clf.fit(X, y, sample_domain=sample_domain)

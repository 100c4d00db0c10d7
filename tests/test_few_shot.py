"""Contrastive few-shot fine-tuning (``contrastive=``): its stream, its sampler, its losses, and how it composes."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import Contrastive, PretrainedImageClassifier, PretrainedTextClassifier, PretrainedTextEmbedder, load
from sktransfer._streams.contrastive import ClassPairSampler, cosine_pair_loss, supcon_loss, triplet_loss


def _distance_ratio(embeddings: np.ndarray, y) -> float:
    """Mean cosine distance between same-class rows over that between rows of different classes."""
    z = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distance = 1.0 - z @ z.T
    y = np.asarray(y)
    same = y[:, None] == y[None, :]
    off_diagonal = ~np.eye(len(y), dtype=bool)
    return float(distance[same & off_diagonal].mean() / distance[~same].mean())


@pytest.fixture
def few_shot_params(tiny_text_params) -> dict:
    return {**tiny_text_params, "freeze_layers": "none", "contrastive": "cosine", "max_epochs": 2}


@pytest.mark.parametrize("loss", ["cosine", "supcon", "triplet"])
def test_stream_pulls_same_class_embeddings_together(tiny_text_params, text_data, loss):
    X, y = text_data
    embedder = PretrainedTextEmbedder(backbone=tiny_text_params["backbone"], max_length=16)
    before = _distance_ratio(embedder.fit_transform(X), y)
    clf = PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 3}, freeze_layers="none", lr=1e-3,
                                   contrastive=Contrastive(loss=loss, min_steps=5)).fit(X, y)
    after = _distance_ratio(clf.transform(X), y)
    assert after < 0.8 * before
    assert clf.C_ is not None  # the head was solved on the tuned embeddings
    assert clf.score(X, y) == 1.0


def test_head_is_solved_on_the_tuned_embeddings(few_shot_params, text_data):
    """After the backbone trains, the head is LogisticRegression's fit on the tuned, standardised embeddings."""
    from sklearn.linear_model import LogisticRegression

    X, y = text_data
    clf = PretrainedTextClassifier(**few_shot_params).fit(X, y)
    head = clf.net_.module_.head
    z = (torch.as_tensor(clf.transform(X)) - head.mean) / head.scale
    reference = LogisticRegression(C=clf.C_).fit(z.numpy(), y)
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(z.numpy()), atol=2e-3)


def test_head_on_the_prefix_cache_is_solved_on_the_tuned_embeddings(tiny_image_params, image_data):
    """Top blocks over the frozen-prefix cache: the head solved on the cached prefix outputs run through the
    trained suffix is the one solved on the tuned model's own embeddings."""
    from sklearn.linear_model import LogisticRegression

    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers=-1, contrastive="cosine").fit(X, y)
    assert clf.prefix_cached_
    head = clf.net_.module_.head
    z = ((torch.as_tensor(clf.transform(X)) - head.mean) / head.scale).numpy()
    reference = LogisticRegression(C=clf.C_).fit(z, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(z), atol=2e-3)


def test_deterministic_under_random_state(few_shot_params, text_data):
    X, y = text_data
    a = PretrainedTextClassifier(**few_shot_params).fit(X, y).predict_proba(X)
    b = PretrainedTextClassifier(**few_shot_params).fit(X, y).predict_proba(X)
    c = PretrainedTextClassifier(**{**few_shot_params, "random_state": 1}).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_epochs_take_at_least_min_steps(few_shot_params, text_data):
    X, y = text_data
    clf = PretrainedTextClassifier(**{**few_shot_params, "max_epochs": 1, "batch_size": 8,
                                      "contrastive": Contrastive(min_steps=7)}).fit(X, y)
    # 24 rows are 3 batches of 8: the epoch goes round them 3 times (9 batches) to take at least 7 steps.
    assert clf.net_.steps_done_ == 9


def test_min_steps_auto_takes_a_step_per_class_beyond_the_first(few_shot_params, text_data):
    assert [Contrastive().steps_per_epoch(c) for c in (2, 3, 6)] == [1, 2, 5]
    assert Contrastive(min_steps=7).steps_per_epoch(2) == 7
    X, y = text_data
    binary = PretrainedTextClassifier(**{**few_shot_params, "max_epochs": 1, "batch_size": 8,
                                         "contrastive": Contrastive()}).fit(X, y)
    assert binary.net_.steps_done_ == 3  # one pass over 24 rows in batches of 8
    labels = np.array(["a", "b", "c", "d"] * 6)
    four = PretrainedTextClassifier(**{**few_shot_params, "max_epochs": 1, "batch_size": 12,
                                       "contrastive": Contrastive()}).fit(X, labels)
    assert four.net_.steps_done_ == 4  # 3 steps at least: the epoch goes round the 24 rows twice


def test_top_blocks_only(few_shot_params, text_data, tiny_image_params, image_data):
    X, y = text_data
    top = PretrainedTextClassifier(**{**few_shot_params, "freeze_layers": -1}).fit(X, y)
    full = PretrainedTextClassifier(**few_shot_params).fit(X, y)
    assert 0 < top.n_trainable_backbone_params_ < full.n_trainable_backbone_params_
    assert top.backbone_tuned_ and top.score(X, y) >= 0.9
    X, y = image_data  # image backbones run their frozen blocks once, into the prefix cache
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers=-1, contrastive="cosine").fit(X, y)
    assert clf.prefix_cached_ and clf.C_ is not None


def test_composes_with_lora_class_weight_and_keep_blocks(few_shot_params, text_data):
    pytest.importorskip("peft")
    X, y = text_data
    clf = PretrainedTextClassifier(**{**few_shot_params, "freeze_layers": "all"}, adapter="lora",
                                   class_weight="balanced", keep_blocks=2).fit(X, y)
    assert clf.C_ is not None and clf.score(X, y) >= 0.9


def test_without_a_solvable_head_the_head_trains_beside_the_term(few_shot_params, text_data):
    X, y = text_data
    clf = PretrainedTextClassifier(**{**few_shot_params, "head_hidden": (8,), "max_epochs": 6, "lr": 1e-3}).fit(X, y)
    assert clf.C_ is None
    assert clf.score(X, y) >= 0.9


def test_pipeline_gridsearch_pickle_and_save(few_shot_params, text_data, tmp_path):
    X, y = text_data
    pipe = make_pipeline(PretrainedTextClassifier(**{**few_shot_params, "contrastive": Contrastive()}))
    search = GridSearchCV(pipe, {"pretrainedtextclassifier__contrastive__loss": ["cosine", "supcon"]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["pretrainedtextclassifier__contrastive__loss"] in ("cosine", "supcon")
    clf = PretrainedTextClassifier(**{**few_shot_params, "contrastive": Contrastive(loss="triplet")}).fit(X, y)
    expected = clf.predict_proba(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected, atol=1e-6)
    loaded = load(clf.save(tmp_path / "model"))
    assert loaded.contrastive.get_params() == {"loss": "triplet", "min_steps": "auto"}
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-5)
    assert clone(clf).contrastive is not clf.contrastive


def test_images(tiny_image_params, image_data):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", contrastive="supcon").fit(X, y)
    assert clf.C_ is not None and clf.predict(X).shape == (len(X),)


def test_dropout_and_head_lr_warn_that_they_have_no_effect(few_shot_params, text_data):
    X, y = text_data
    with pytest.warns(UserWarning, match="dropout=0.2 has no effect: contrastive"):
        PretrainedTextClassifier(**few_shot_params, dropout=0.2).fit(X, y)


@pytest.mark.parametrize("change, message", [
    ({"freeze_layers": "all"}, "no backbone weight trains"),
    ({"early_stopping": True}, "early_stopping watches"),
    ({"contrastive": "pairs"}, "contrastive"),
    ({"contrastive": Contrastive(min_steps=0)}, "min_steps"),
])
def test_bad_settings_are_refused(few_shot_params, text_data, change, message):
    X, y = text_data
    with pytest.raises(ValueError, match=message):
        PretrainedTextClassifier(**{**few_shot_params, **change}).fit(X, y)


@pytest.mark.parametrize("labels, message", [
    (["a"] * 5 + ["b"], "at least 2 labelled rows of each class"),
    (["a"] * 6, "single class"),
    ([[0, 1], [1, 0]] * 3, "single-label y"),
])
def test_bad_labels_are_refused(few_shot_params, labels, message):
    X = ["good film", "bad film", "great plot", "awful plot", "nice movie", "poor movie"]
    with pytest.raises(ValueError, match=message):
        PretrainedTextClassifier(**few_shot_params).fit(X, np.asarray(labels))


def test_combining_with_domain_adaptation_is_refused(few_shot_params, text_data):
    X, y = text_data
    y = np.array(y, dtype=object)
    y[-4:] = None
    with pytest.raises(ValueError, match="cannot be combined"):
        PretrainedTextClassifier(**few_shot_params, domain_adaptation="coral").fit(X, y)


def test_sampler_pairs_rows_of_one_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    torch.manual_seed(0)
    sampler = ClassPairSampler(labels, min_rows=30)
    order = list(sampler)
    assert len(order) == len(sampler) >= 30
    pairs = np.asarray(order).reshape(-1, 2)
    assert (labels[pairs[:, 0]] == labels[pairs[:, 1]]).all()
    assert set(order) == set(range(len(labels)))


def test_losses_are_low_for_separated_classes_and_high_for_mixed_ones():
    labels = torch.tensor([0, 0, 1, 1])
    weights = torch.ones(4)
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    mixed = separated[[0, 2, 1, 3]]
    for loss in (lambda z: cosine_pair_loss(z, labels, weights), lambda z: supcon_loss(z, labels, weights, 0.1),
                 lambda z: triplet_loss(z, labels, weights, 0.25)):
        assert float(loss(separated)) < float(loss(mixed))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(cosine_pair_loss(separated, labels, weights)) < 1e-3


def test_standardisation_shrinks_variances_of_few_rows_toward_their_mean():
    from sktransfer._heads import VARIANCE_SHRINKAGE, Head

    rng = np.random.default_rng(0)
    spread = np.array([0.1, 1.0, 10.0], dtype=np.float32)
    ratios = []
    for n in (6, 6000):
        features = torch.as_tensor(rng.normal(size=(n, 3)).astype(np.float32) * spread)
        shrunk, plain = Head(3, 2), Head(3, 2)
        shrunk.fit_standardization(features)
        plain.fit_standardization(features, shrink=False)
        variance = features.var(0, unbiased=False)
        share = n / (n + VARIANCE_SHRINKAGE)
        expected = (share * variance + (1 - share) * variance.mean()).sqrt()
        torch.testing.assert_close(shrunk.scale, expected.clamp(min=0.1 * float(expected.mean())))
        torch.testing.assert_close(plain.scale, variance.sqrt().clamp(min=0.1 * float(variance.sqrt().mean())))
        ratios.append(float(shrunk.scale.max() / shrunk.scale.min()))
    assert ratios[0] < 1.1 < 5 < ratios[1]  # 6 rows: one scale for all features; 6,000: nearly per feature


def test_fine_tuning_keeps_unshrunk_standardisation(few_shot_params, text_data):
    X, y = text_data
    clf = PretrainedTextClassifier(**{**few_shot_params, "contrastive": None, "max_epochs": 1}).fit(X, y)
    reference = PretrainedTextEmbedder(backbone=few_shot_params["backbone"], max_length=16).fit_transform(X)
    std = torch.as_tensor(reference).std(0, unbiased=False)
    torch.testing.assert_close(clf.net_.module_.head.scale, std.clamp(min=0.1 * float(std.mean())), atol=1e-5,
                               rtol=1e-4)


# ------------------------------------------------------------------ the default: contrastive="auto"
def test_the_default_tunes_a_text_backbone_from_few_labels(tiny_text_params, text_data):
    X, y = text_data  # 12 rows per class
    clf = PretrainedTextClassifier(**tiny_text_params).fit(X, y)
    assert isinstance(clf.contrastive_, Contrastive) and clf.contrastive_.get_params() == Contrastive().get_params()
    assert clf.freeze_layers_ == "none" and clf.backbone_tuned_
    assert clf.C_ is not None
    explicit = PretrainedTextClassifier(**tiny_text_params, contrastive=Contrastive(), freeze_layers="none").fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), explicit.predict_proba(X))  # the same model


def test_the_default_stays_frozen_with_many_labels_per_class(tiny_text_params, text_data, monkeypatch):
    from sktransfer import _few_shot

    X, y = text_data
    monkeypatch.setattr(_few_shot, "AUTO_ROWS_PER_CLASS", 11)  # fewer than the 12 rows of each class
    clf = PretrainedTextClassifier(**tiny_text_params).fit(X, y)
    assert clf.contrastive_ is None and clf.freeze_layers_ == "all" and not clf.backbone_tuned_


@pytest.mark.parametrize("change", [
    {"freeze_layers": "all"}, {"freeze_layers": -1}, {"adapter": "lora"}, {"early_stopping": True},
    {"C": None}, {"head_hidden": (8,)}, {"label_smoothing": 0.1},
])
def test_the_default_leaves_a_chosen_recipe_alone(tiny_text_params, text_data, change):
    X, y = text_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = PretrainedTextClassifier(**tiny_text_params, **change).fit(X, y)
    assert clf.contrastive_ is None


def test_the_default_skips_what_contrastive_pairs_cannot_use(tiny_text_params, text_data):
    X, y = text_data
    lonely = PretrainedTextClassifier(**tiny_text_params).fit(X[:7], y[:7])  # one "neg" row: no pair, no error
    assert lonely.contrastive_ is None and lonely.freeze_layers_ == "all"
    multilabel = PretrainedTextClassifier(**tiny_text_params).fit(X, np.eye(2, dtype=int)[[i % 2 for i in range(24)]])
    assert multilabel.contrastive_ is None
    incremental = PretrainedTextClassifier(**tiny_text_params).partial_fit(X, y, classes=["neg", "pos"])
    assert incremental.contrastive_ is None


def test_images_and_regressors_stay_frozen_by_default(tiny_image_params, image_data):
    from sktransfer import PretrainedImageRegressor

    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params).fit(X, y)
    assert clf.contrastive_ is None and clf.freeze_layers_ == "all"
    reg = PretrainedImageRegressor(**tiny_image_params).fit(X, np.arange(len(X), dtype=float))
    assert reg.freeze_layers_ == "all"


def test_an_explicit_contrastive_trains_what_it_needs(tiny_text_params, tiny_image_params, text_data, image_data):
    text = PretrainedTextClassifier(**tiny_text_params, contrastive="cosine").fit(*text_data)
    assert text.freeze_layers_ == "none"
    image = PretrainedImageClassifier(**tiny_image_params, contrastive="cosine").fit(*image_data)
    assert image.freeze_layers_ == -3 and image.prefix_cached_

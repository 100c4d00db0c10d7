"""The frozen-feature cache: same predictions, invalidation, reuse across epochs, folds and processes, bound."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import GridSearchCV

import _counting
from conftest import force_raw_stage
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    feature_cache,
)
from sktransfer._backbones import ImageEncoder, TextEncoder
from sktransfer._cache import EmbeddingKey, FeatureCache, feature_keys


@pytest.fixture
def forward_items(monkeypatch) -> list[int]:
    """Batch sizes of every image- and text-encoder forward pass in this process, in order."""
    items: list[int] = []

    def counting(original):
        def forward(self, *args, **kwargs):
            items.append(next(iter([*args, *kwargs.values()])).shape[0])
            return original(self, *args, **kwargs)
        return forward

    monkeypatch.setattr(ImageEncoder, "forward", counting(ImageEncoder.forward))
    monkeypatch.setattr(TextEncoder, "forward", counting(TextEncoder.forward))
    _counting.uncount_fold_checks(monkeypatch, items)
    return items


@pytest.fixture
def unique_texts(text_data):
    """24 distinct texts never embedded before in this session (so no earlier test's cache serves them)."""
    X, y = text_data
    tag = uuid.uuid4().hex
    return [f"{text} {tag} {i}" for i, text in enumerate(X)], y


@pytest.mark.parametrize("head", [{"head_hidden": (8,), "dropout": 0.1, "max_epochs": 3}, {"C": None, "max_epochs": 3},
                                  {}, {"C": "cv"}, {"C": 0.5}, {"label_smoothing": 0.1}])
def test_cache_on_and_off_give_the_same_model(image_data, tiny_image_params, head, monkeypatch):
    X, y = image_data
    params = {**tiny_image_params, **head}
    cached = PretrainedImageClassifier(**params).fit(X, y)
    uncached = PretrainedImageClassifier(**params, cache=False).fit(X, y)
    np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-6)
    force_raw_stage(monkeypatch)  # the backbone runs at every step: precomputing is only an optimisation
    plain = PretrainedImageClassifier(**params).fit(X, y)
    assert cached.features_cached_ and uncached.features_cached_ and not plain.features_cached_
    if cached.C_ is None:  # the converged head needs the embeddings; the reference trains by epochs
        np.testing.assert_allclose(cached.predict_proba(X), plain.predict_proba(X), atol=1e-5)


def test_cache_on_and_off_give_the_same_text_model(unique_texts, tiny_text_params):
    X, y = unique_texts
    for head in ({}, {"C": None}, {"head_hidden": (4,)}):
        cached = PretrainedTextClassifier(**tiny_text_params, **head).fit(X, y)
        uncached = PretrainedTextClassifier(**tiny_text_params, **head, cache=False).fit(X, y)
        np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-6)


def test_rewritten_image_file_is_embedded_again(tmp_path, forward_items):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(paths[-1])
    embedder = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit(paths)
    first = embedder.transform(paths)
    assert sum(forward_items) == 4
    np.testing.assert_array_equal(embedder.transform(paths), first)
    assert sum(forward_items) == 4  # all served from the cache
    Image.fromarray(np.full((40, 40, 3), 255, dtype=np.uint8)).save(paths[2])  # new size and mtime
    second = embedder.transform(paths)
    assert sum(forward_items) == 5  # only the rewritten file
    assert not np.allclose(second[2], first[2])
    np.testing.assert_array_equal(second[[0, 1, 3]], first[[0, 1, 3]])


def test_modified_array_is_embedded_again(image_data, forward_items):
    X = image_data[0][:4].copy()
    embedder = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit(X)
    first = embedder.transform(X)
    X[1] = 255 - X[1]
    second = embedder.transform(X)
    assert sum(forward_items) == 5
    assert not np.allclose(second[1], first[1])


def test_features_are_computed_once_across_epochs(unique_texts, tiny_text_params, forward_items):
    X, y = unique_texts
    PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 4}, freeze_layers="all").fit(X, y)
    assert sum(forward_items) == len(X)
    forward_items.clear()
    PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 4}, C=None).fit(X, y)
    assert sum(forward_items) == 0  # served from the cache
    PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 4}, C=None, cache=False).fit(X, y)
    PretrainedTextClassifier(**{**tiny_text_params, "max_epochs": 4}, C=None, cache=False).fit(X, y)
    assert sum(forward_items) == 2 * len(X)  # without the cache: once per fit, never kept for the next


def test_grid_search_computes_each_embedding_once(unique_texts, tiny_text_params, forward_items):
    X, y = unique_texts
    grid = {"lr": [1e-3, 1e-2], "dropout": [0.0, 0.2]}  # C=None: the head trains by epochs, where these matter
    search = GridSearchCV(PretrainedTextClassifier(**tiny_text_params, C=None), grid,
                          cv=3, n_jobs=1).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert sum(forward_items) == len(X)  # 12 fits, 2 epochs each, 12 scorings, one refit: one pass


def test_parallel_workers_share_cache_dir_and_compute_once(unique_texts, tiny_text_params, tmp_path, monkeypatch):
    X, y = unique_texts
    log = str(tmp_path / "forward.log")
    open(log, "w").close()
    monkeypatch.setattr(TextEncoder, "forward", _counting.counting_forward)
    monkeypatch.setattr(_counting, "_LOG", [log])
    cache_dir = tmp_path / "features"
    estimator = PretrainedTextClassifier(**tiny_text_params, freeze_layers="all", cache_dir=str(cache_dir))
    GridSearchCV(estimator, {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=2, scoring=_counting.CountingScorer(log)).fit(X, y)
    assert _counting.counted(log) == len(X)  # across both workers and the refit in this process
    assert len(list(cache_dir.glob("*/*.npy"))) == len(X)


def test_memory_stays_within_the_bound_least_recently_used_first():
    cache = FeatureCache(max_bytes=3 * 40)  # room for three 10-float embeddings
    values = np.arange(40, dtype=np.float32).reshape(4, 10)
    cache.put(["a", "b", "c"], values[:3])
    cache.get(["a"])  # "a" is now the most recently used
    cache.put(["d"], values[3:])
    assert cache.nbytes == 120 <= cache.max_bytes and len(cache) == 3
    assert set(cache.get(["a", "b", "c", "d"])) == {0, 2, 3}  # "b" was evicted
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_global_cache_respects_a_small_bound(image_data, monkeypatch):
    embedder = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit(image_data[0])
    monkeypatch.setattr(feature_cache, "max_bytes", 5 * embedder.n_features_out_ * 4)  # five embeddings
    assert embedder.transform(image_data[0]).shape == (16, embedder.n_features_out_)
    assert 0 < feature_cache.nbytes <= feature_cache.max_bytes and len(feature_cache) == 5


def test_cache_false_turns_it_off(image_data, forward_items):
    X = image_data[0][:4]
    n_stored = len(feature_cache)
    embedder = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False, cache=False).fit(X)
    np.testing.assert_allclose(embedder.transform(X), embedder.transform(X))
    assert sum(forward_items) == 8 and len(feature_cache) == n_stored


KEY = EmbeddingKey(backbone="hf:model:True", preprocessing="max_length=16", precision="fp32", pooling="mean")
OTHER_VALUES = {"backbone": "fitted:0123", "preprocessing": "max_length=8", "precision": "bf16", "pooling": "cls",
                "prefix_boundary": "model.blocks.1", "view": "View(zoom=1.0, position='center', flip=True)"}


def test_every_field_of_the_key_has_a_case_below():
    assert {field.name for field in dataclasses.fields(EmbeddingKey)} == set(OTHER_VALUES)


@pytest.mark.parametrize("field", sorted(OTHER_VALUES))
def test_changing_any_field_of_the_key_changes_every_item_key(field):
    changed = dataclasses.replace(KEY, **{field: OTHER_VALUES[field]})
    items = ["a text", "another text"]
    assert changed.namespace() != KEY.namespace()
    assert not set(feature_keys(items, changed, str)) & set(feature_keys(items, KEY, str))
    assert feature_keys(items, dataclasses.replace(changed), str) == feature_keys(items, changed, str)


@pytest.fixture
def embedding_keys(monkeypatch) -> list[EmbeddingKey]:
    """Every EmbeddingKey the estimators look embeddings up under, in order."""
    import sktransfer._embedding

    keys: list[EmbeddingKey] = []
    real = sktransfer._embedding.feature_keys

    def spy(items, key, *args):
        keys.append(key)
        return real(items, key, *args)

    monkeypatch.setattr(sktransfer._embedding, "feature_keys", spy)
    return keys


@pytest.mark.parametrize("change, field", [({"pooling": "cls"}, "pooling"), ({"max_length": 8}, "preprocessing"),
                                           ({"keep_blocks": 2}, "backbone"), ({"precision": "bf16"}, "precision")])
def test_the_embedders_key_follows_each_parameter_that_changes_an_embedding(text_data, tiny_bert_dir, embedding_keys,
                                                                            change, field):
    params = {"backbone": tiny_bert_dir, "max_length": 16}
    X = text_data[0][:3]
    PretrainedTextEmbedder(**params).fit(X).transform(X)
    PretrainedTextEmbedder(**{**params, **change}).fit(X).transform(X)
    before, after = embedding_keys
    assert getattr(before, field) != getattr(after, field)


def test_cls_and_mean_pooling_on_the_same_fitted_backbone_embed_differently(unique_texts, tiny_text_params):
    # Regression: the key once named the fitted model's backbone but not the new model's pooling, so the second
    # embedder (and a classifier's head) got the first one's mean-pooled embeddings from the cache.
    X, y = unique_texts
    fitted = PretrainedTextClassifier(**tiny_text_params).fit(X, y)
    params = {"backbone": fitted, "max_length": 16}
    mean = PretrainedTextEmbedder(**params, pooling="mean").fit(X).transform(X)
    cls = PretrainedTextEmbedder(**params, pooling="cls").fit(X).transform(X)
    assert not np.allclose(mean, cls)
    np.testing.assert_allclose(cls, PretrainedTextEmbedder(**params, pooling="cls", cache=False).fit(X).transform(X),
                               atol=1e-6)
    on_cls = {**tiny_text_params, "backbone": fitted, "pooling": "cls"}
    np.testing.assert_allclose(PretrainedTextClassifier(**on_cls).fit(X, y).predict_proba(X),
                               PretrainedTextClassifier(**on_cls, cache=False).fit(X, y).predict_proba(X), atol=1e-6)

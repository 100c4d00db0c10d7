"""Sequential transfer: a fitted model, or a folder its save() wrote, as the next model's backbone."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from sktransfer import (
    PretrainedImageClassifier,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
    load,
)


def _state(model) -> dict:
    return {k: v.clone() for k, v in model._fitted_encoder().state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def tuned_text(tiny_bert_dir, text_data):
    """A tiny BERT fine-tuned on the toy sentiment task."""
    X, y = text_data
    return PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, freeze_layers="none", lr=1e-2,
                                    max_epochs=3, random_state=0).fit(X, y)


def test_the_new_model_starts_from_the_fine_tuned_backbone(tuned_text, tiny_bert_dir, text_data):
    X, y = text_data
    before = _state(tuned_text)
    new = PretrainedTextClassifier(backbone=tuned_text, max_length=16, freeze_layers="all",
                                   random_state=0).fit(X, [len(t) > 9 for t in X])
    np.testing.assert_allclose(new.transform(X), tuned_text.transform(X), atol=1e-5)
    pretrained = PretrainedTextEmbedder(backbone=tiny_bert_dir, max_length=16).fit(X).transform(X)
    assert np.abs(new.transform(X) - pretrained).max() > 1e-3  # not the pretrained weights
    assert new.classes_.tolist() == [False, True]  # its own head, for its own labels
    assert new.base_model_ is tuned_text and _same_state(before, _state(tuned_text))
    assert new.backbone_identity_.startswith("fitted:")


def test_everything_else_applies_to_the_fitted_backbone(tuned_text, text_data):
    X, y = text_data
    before = _state(tuned_text)
    new = PretrainedTextClassifier(backbone=tuned_text, max_length=16, freeze_layers=-1, lr=1e-2,
                                   random_state=0).fit(X, y)
    assert new.backbone_tuned_ and new.n_backbone_blocks_ == tuned_text.n_backbone_blocks_
    assert not _same_state(_state(new), before) and _same_state(before, _state(tuned_text))
    reg = PretrainedTextRegressor(backbone=tuned_text, max_length=16, random_state=0).fit(X, np.arange(len(X)))
    assert reg.predict(X).shape == (len(X),)


def test_clone_and_grid_search_keep_the_fitted_model(tuned_text, text_data):
    X, y = text_data
    before, proba = _state(tuned_text), tuned_text.predict_proba(X)
    new = PretrainedTextClassifier(backbone=tuned_text, max_length=16, random_state=0)
    assert clone(new).backbone is tuned_text
    search = GridSearchCV(new, {"C": [0.01, 1.0]}, cv=2).fit(X, y)
    assert search.best_estimator_.backbone is tuned_text and search.best_estimator_.base_model_ is tuned_text
    assert _same_state(before, _state(tuned_text))
    np.testing.assert_array_equal(tuned_text.predict_proba(X), proba)
    assert clone(tuned_text).__sklearn_is_fitted__() is False  # cloning the fitted model itself still unfits it


def test_a_saved_folder_works_as_backbone_and_the_new_model_does_not_need_it(tuned_text, text_data, tmp_path):
    X, y = text_data
    folder = tuned_text.save(tmp_path / "first")
    new = PretrainedTextClassifier(backbone=str(folder), max_length=16, freeze_layers="all", random_state=0).fit(X, y)
    np.testing.assert_allclose(new.transform(X), tuned_text.transform(X), atol=1e-5)
    expected = new.predict_proba(X)
    pickled = pickle.dumps(new)
    new.save(tmp_path / "second")
    shutil.rmtree(folder)
    np.testing.assert_allclose(pickle.loads(pickled).predict_proba(X), expected, atol=1e-6)
    np.testing.assert_allclose(load(tmp_path / "second").predict_proba(X), expected, atol=1e-6)


def test_save_and_pickle_of_a_model_built_on_a_fitted_model(tuned_text, text_data, tmp_path):
    X, y = text_data
    new = PretrainedTextClassifier(backbone=tuned_text, max_length=16, freeze_layers=-1, random_state=0).fit(X, y)
    expected = new.predict_proba(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(new)).predict_proba(X), expected, atol=1e-6)
    loaded = load(new.save(tmp_path / "model"))
    assert (tmp_path / "model" / "base" / "config.json").is_file()
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6)
    assert isinstance(loaded.backbone, PretrainedTextClassifier) and loaded.backbone.__sklearn_is_fitted__()


def test_an_image_model_as_the_next_backbone(image_data, tiny_image_params):
    X, y = image_data
    first = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", lr=1e-2).fit(X, y)
    new = PretrainedImageClassifier(backbone=first, freeze_layers=2, max_epochs=1, random_state=0).fit(X, y[::-1])
    assert new.n_backbone_blocks_ == first.n_backbone_blocks_ and new.backbone_tuned_
    frozen = PretrainedImageClassifier(backbone=first, max_epochs=1, random_state=0).fit(X, y)
    np.testing.assert_allclose(frozen.transform(X), first.transform(X), atol=1e-5)


def test_lora_adapters_are_merged_into_the_passed_on_backbone(tiny_bert_dir, text_data):
    X, y = text_data
    lora = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, adapter="lora", lr=1e-2, max_epochs=3,
                                    random_state=0).fit(X, y)
    new = PretrainedTextEmbedder(backbone=lora, max_length=16).fit(X)
    np.testing.assert_allclose(new.transform(X), lora.transform(X), atol=1e-4)
    assert not any("lora_" in name for name in new.encoder_.state_dict())


def test_an_unchanged_pretrained_backbone_shares_its_cached_embeddings(tiny_bert_dir, text_data):
    X, y = text_data
    frozen = PretrainedTextClassifier(backbone=tiny_bert_dir, max_length=16, freeze_layers="all",
                                      random_state=0).fit(X, y)
    new = PretrainedTextClassifier(backbone=frozen, max_length=16, freeze_layers="all", random_state=0).fit(X, y)
    assert new.backbone_identity_ == frozen.backbone_identity_


def test_bad_fitted_backbones(tuned_text, tiny_bert_dir, text_data, image_data):
    X, y = text_data
    with pytest.raises(ValueError, match="unfitted PretrainedTextClassifier: fit it first"):
        PretrainedTextClassifier(backbone=PretrainedTextClassifier(backbone=tiny_bert_dir)).fit(X, y)
    with pytest.raises(ValueError, match="needs a backbone for image inputs"):
        PretrainedImageClassifier(backbone=tuned_text).fit(*image_data)
    with pytest.raises(ValueError, match="leave pretrained=True"):
        PretrainedTextClassifier(backbone=tuned_text, pretrained=False, max_length=16).fit(X, y)

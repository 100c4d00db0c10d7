"""Embedders as scikit-learn transformers: pipelines, unions, column transformers, search, fusion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.preprocessing import StandardScaler

from sktransfer import PretrainedImageEmbedder, PretrainedTextClassifier, PretrainedTextEmbedder


@pytest.fixture
def text_embedder(tiny_bert_dir):
    return lambda **kw: PretrainedTextEmbedder(backbone=tiny_bert_dir, max_length=16, **kw)


def test_transform_shape_dtype_and_feature_names(text_data, text_embedder, image_data):
    X, _ = text_data
    embedder = text_embedder().fit(X)
    Z = embedder.transform(X)
    assert isinstance(Z, np.ndarray) and Z.shape == (len(X), 32) and Z.dtype == np.float32
    names = embedder.get_feature_names_out()
    assert names.tolist() == [f"pretrainedtextembedder{i}" for i in range(32)]
    images = PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit(image_data[0])
    assert images.transform(image_data[0]).shape == (16, images.n_features_out_)
    assert len(images.get_feature_names_out()) == images.n_features_out_


def test_pooling_changes_the_embedding(text_data, text_embedder):
    X, _ = text_data
    mean, cls = text_embedder().fit_transform(X), text_embedder(pooling="cls").fit_transform(X)
    assert mean.shape == cls.shape and not np.allclose(mean, cls)


def test_pipeline_with_logistic_regression(text_data, text_embedder):
    X, y = text_data
    pipe = make_pipeline(text_embedder(), LogisticRegression(max_iter=1000)).fit(X, y)
    assert pipe.predict(X).shape == (len(X),) and pipe.score(X, y) > 0.5


def test_feature_union_concatenates_two_embedders(text_data, text_embedder):
    X, _ = text_data
    union = FeatureUnion([("mean", text_embedder()), ("cls", text_embedder(pooling="cls"))])
    Z = union.fit_transform(X)
    assert Z.shape == (len(X), 64)
    np.testing.assert_allclose(Z[:, :32], text_embedder().fit_transform(X), atol=1e-6)
    names = union.get_feature_names_out()
    assert names[0] == "mean__pretrainedtextembedder0" and names[32] == "cls__pretrainedtextembedder0"


def test_column_transformer_on_text_and_numeric_columns(text_data, text_embedder):
    X, y = text_data
    df = pd.DataFrame({"review": X, "length": [len(t) for t in X], "stars": np.arange(len(X)) % 5})
    columns = ColumnTransformer([("text", text_embedder(), "review"), ("num", StandardScaler(), ["length", "stars"])])
    pipe = make_pipeline(columns, LogisticRegression(max_iter=1000)).fit(df, y)
    assert columns.transform(df).shape == (len(X), 34)
    assert pipe.predict(df.iloc[:3]).shape == (3,)
    assert columns.get_feature_names_out()[-2:].tolist() == ["num__length", "num__stars"]


def test_grid_search_over_an_embedder_pipeline(text_data, text_embedder):
    X, y = text_data
    pipe = make_pipeline(text_embedder(), LogisticRegression(max_iter=1000))
    search = GridSearchCV(pipe, {"pretrainedtextembedder__pooling": ["mean", "cls"], "logisticregression__C": [0.1, 1]},
                          cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["pretrainedtextembedder__pooling"] in {"mean", "cls"}


def test_soft_voting_fuses_classifier_probabilities(text_data, tiny_text_params):
    X, y = text_data
    members = [(p, PretrainedTextClassifier(**tiny_text_params, pooling=p)) for p in ("mean", "cls")]
    voting = VotingClassifier(members, voting="soft", weights=[2, 1]).fit(X, y)
    probas = [est.predict_proba(X) for est in voting.estimators_]
    np.testing.assert_allclose(voting.predict_proba(X), (2 * probas[0] + probas[1]) / 3, atol=1e-6)
    assert set(voting.predict(X)) <= set(y)

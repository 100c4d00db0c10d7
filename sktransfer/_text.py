"""The text estimators: classifier, regressor and embedder over one text-input mixin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backbones import resolve_text_backbone
from ._cache import text_fingerprint
from ._classification import ClassifierTask
from ._docs import CLASSIFIER, EMBEDDER, REGRESSOR, TEXT, document, related
from ._embedding import BackboneEstimator, EmbedderBase
from ._regression import RegressorTask
from ._text_data import TextCollator, TextDataset, check_max_length, check_texts
from ._validation import StrOptions, positive_int


@dataclass(repr=False, eq=False, kw_only=True)
class _TextInput(BackboneEstimator):
    backbone: Any = "all-MiniLM-L6-v2"
    max_length: int = 128
    pooling: str = "mean"

    _parameter_constraints = {
        "max_length": [positive_int],
        "pooling": [StrOptions({"mean", "cls"})],
    }

    _item_fingerprint = staticmethod(text_fingerprint)
    _modality = "text"

    def _check_inputs(self, X) -> list:
        return check_texts(X)

    def _load_backbone(self):
        return resolve_text_backbone(self.backbone, self.pretrained, self.pooling)

    def _checked_backbone(self, backbone):
        backbone.encoder.pooling = self.pooling  # also for a fitted model's backbone: the pooling is this model's
        check_max_length(self.max_length, backbone.encoder.model, backbone.tokenizer, self.backbone)
        return backbone

    def _make_dataset(self, items, y=None, sample_weight=None, augment=None):
        return TextDataset(items, y, sample_weight)

    def _collate_fn(self):
        return TextCollator(self.tokenizer_, self.max_length)

    def _preprocessing_key(self, encoder) -> dict[str, str]:
        """This modality's fields of the :class:`~sktransfer._cache.EmbeddingKey`; the pooling is the encoder's,
        which computes the embeddings (``set_params`` may have changed the parameter since)."""
        return {"preprocessing": f"max_length={self.max_length}", "pooling": encoder.pooling}

    def _inference_order(self, items: list) -> np.ndarray:
        return np.argsort([len(text) for text in items], kind="stable")

    def _export_inputs(self, folder) -> tuple[list[str], tuple, dict]:
        names = ["input_ids", "attention_mask"]
        example = dict(self.tokenizer_(["a b", "c"], padding=True, return_tensors="pt"))
        self.tokenizer_.save_pretrained(folder)
        return names, tuple(example[n] for n in names), {n: {0: "batch", 1: "sequence"} for n in names}

    def _train_sampler(self, items: list):
        # Shuffled batches of similar-length texts, so little of each batch is padding.
        from transformers.trainer_pt_utils import LengthGroupedSampler

        return LengthGroupedSampler(self.batch_size, lengths=[len(text) for text in items])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


@document(
    TEXT, CLASSIFIER,
    see_also=related("Text", "Regressor", "Embedder"),
    examples="""\
>>> from sktransfer import PretrainedTextClassifier
>>> X = ["a wonderful film", "great acting", "dull and boring", "a waste of time"] * 3
>>> y = ["pos", "pos", "neg", "neg"] * 3
>>> clf = PretrainedTextClassifier(random_state=0).fit(X, y)
>>> clf.predict(["great film", "boring"]).tolist()
['pos', 'neg']
>>> clf.transform(["great film"]).shape  # the backbone's embeddings
(1, 384)""",
)
@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedTextClassifier(_TextInput, ClassifierTask):
    """Text classifier on a pretrained transformer with a new head, trained with skorch."""


@document(
    TEXT, REGRESSOR,
    see_also=related("Text", "Classifier", "Embedder"),
    examples="""\
>>> from sktransfer import PretrainedTextRegressor
>>> X = ["a wonderful film", "great acting", "dull and boring", "a waste of time"] * 3
>>> y = [4.5, 4.0, 1.5, 1.0] * 3
>>> reg = PretrainedTextRegressor(random_state=0).fit(X, y)
>>> reg.predict(["great film", "boring"]).shape
(2,)""",
)
@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedTextRegressor(_TextInput, RegressorTask):
    """Text regressor on a pretrained transformer with a new head, trained with skorch."""


@document(
    TEXT, EMBEDDER,
    see_also=related("Text", "Classifier", "Regressor"),
    examples="""\
>>> from sktransfer import PretrainedTextEmbedder
>>> PretrainedTextEmbedder().fit_transform(["hello world", "good morning"]).shape
(2, 384)""",
)
@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedTextEmbedder(_TextInput, EmbedderBase):
    """Transformer returning a pretrained text model's pooled embeddings (no training)."""

"""The text estimators: classifier, regressor and embedder over one text-input mixin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backbones import resolve_text_backbone
from ._cache import text_fingerprint
from ._docs import BACKBONE_PARAMS, CLASSIFIER_PARAMS, COMMON_ATTRIBUTES, TRAINING_PARAMS, compose
from ._embedding import BackboneEstimator, EmbedderBase
from ._tasks import ClassifierTask, RegressorTask
from ._validation import StrOptions, positive_int
from ._text_data import TextCollator, TextDataset, check_texts

TEXT_PARAMS = """\
backbone : str, default="all-MiniLM-L6-v2"
    "all-MiniLM-L6-v2" (sentence-transformers weights shipped with sktransfer, works offline), a
    Hugging Face model id (from the local cache, or the hub when online) or a local directory
    saved with ``save_pretrained``. The model's own tokenizer is used."""

TEXT_OPTIONS = """\
max_length : int, default=128
    Texts are truncated to this many tokens; batches are padded to their longest text (training
    batches group texts of similar length, predictions run in length order).
pooling : {"mean", "cls"}, default="mean"
    How token states become one embedding: attention-masked mean, or the first ([CLS]) token."""

TEXT_INPUT = "\nTexts may be a list, array or pandas Series of non-empty str."


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

    def _check_inputs(self, X) -> list:
        return check_texts(X)

    def _resolve_backbone(self):
        return resolve_text_backbone(self.backbone, self.pretrained, self.pooling)

    def _make_dataset(self, items, y=None, sample_weight=None, augment=None):
        return TextDataset(items, y, sample_weight)

    def _collate_fn(self):
        return TextCollator(self.tokenizer_, self.max_length)

    def _preprocessing_key(self) -> str:
        return f"max_length={self.max_length}"

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


@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedTextClassifier(_TextInput, ClassifierTask):
    pass


@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedTextRegressor(_TextInput, RegressorTask):
    pass


@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedTextEmbedder(_TextInput, EmbedderBase):
    pass


PretrainedTextClassifier.__doc__ = compose(
    "Text classifier on a pretrained transformer with a new head, trained with skorch.\n" + TEXT_INPUT,
    TEXT_PARAMS, TEXT_OPTIONS, BACKBONE_PARAMS, TRAINING_PARAMS, CLASSIFIER_PARAMS,
    examples="""\
>>> from sktransfer import PretrainedTextClassifier
>>> X = ["a wonderful film", "great acting", "dull and boring", "a waste of time"] * 3
>>> y = ["pos", "pos", "neg", "neg"] * 3
>>> clf = PretrainedTextClassifier(max_epochs=20, random_state=0).fit(X, y)
>>> clf.predict(["great film", "boring"]).tolist()
['pos', 'neg']""",
) + f"\nAttributes\n----------\nclasses_ : ndarray\n    The labels seen in fit.\n{COMMON_ATTRIBUTES}\n"

PretrainedTextRegressor.__doc__ = compose(
    "Text regressor on a pretrained transformer; targets are standardised inside and restored.\n" + TEXT_INPUT,
    TEXT_PARAMS, TEXT_OPTIONS, BACKBONE_PARAMS, TRAINING_PARAMS,
) + f"\nAttributes\n----------\n{COMMON_ATTRIBUTES}\n"

PretrainedTextEmbedder.__doc__ = compose(
    "Transformer returning a pretrained text model's pooled embeddings (no training).\n" + TEXT_INPUT,
    TEXT_PARAMS, TEXT_OPTIONS, BACKBONE_PARAMS,
    examples="""\
>>> from sktransfer import PretrainedTextEmbedder
>>> PretrainedTextEmbedder().fit_transform(["hello world", "good morning"]).shape
(2, 384)""",
)

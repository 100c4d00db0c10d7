"""The image estimators: classifier, regressor and embedder over one image-input mixin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._backbones import resolve_image_backbone
from ._classification import ClassifierTask
from ._docs import AUGMENT, CLASSIFIER, EMBEDDER, IMAGE, REGRESSOR, document, related
from ._embedding import BackboneEstimator, EmbedderBase
from ._image_data import ImageDataset, build_transform, check_images
from ._parameter_docs import TTA_PARAM
from ._regression import RegressorTask
from ._tta import TTA_PARAMETERS, TestTimeAugmentation
from ._validation import StrOptions

_PREDICTOR_CONSTRAINTS = {"augment": [StrOptions({"light", "standard"}), callable, None], **TTA_PARAMETERS}


@dataclass(repr=False, eq=False, kw_only=True)
class _ImageInput(BackboneEstimator):
    backbone: Any = "efficientnet_lite0"

    _modality = "image"
    _view = None  # a test-time view (_tta.View) of every image, on the copies that predict one

    def _check_inputs(self, X) -> list:
        return check_images(X)

    def _load_backbone(self):
        return resolve_image_backbone(self.backbone, self.pretrained)

    def _make_dataset(self, items, y=None, sample_weight=None, augment=None):
        transform = build_transform(self.data_config_, augment)
        return ImageDataset(items, transform if self._view is None else self._view.transform(transform), y,
                            sample_weight)

    def _collate_fn(self):
        return None

    def _preprocessing_key(self, encoder) -> dict[str, str | None]:
        """This modality's fields of the :class:`~sktransfer._cache.EmbeddingKey`."""
        view = None if self._view is None else repr(self._view)
        return {"preprocessing": repr(sorted(self.data_config_.items())), "view": view}

    def _can_cache_prefix(self) -> bool:
        return True

    def _augment(self):
        return getattr(self, "augment", None)  # the trained image estimators' parameter; an embedder has none

    def _export_inputs(self, folder) -> tuple[list[str], tuple, dict]:
        return ["pixel_values"], (torch.zeros(2, *self.data_config_["input_size"]),), {"pixel_values": {0: "batch"}}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags



@document(
    IMAGE, CLASSIFIER, AUGMENT, TTA_PARAM,
    see_also=related("Image", "Regressor", "Embedder"),
    examples="""\
>>> import numpy as np
>>> from sktransfer import PretrainedImageClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
>>> y = ["cat", "dog"] * 4
>>> clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, random_state=0)
>>> clf.fit(X, y).predict(X[:2]).shape
(2,)
>>> clf.classes_.tolist()
['cat', 'dog']
>>> clf.transform(X[:2]).shape  # the backbone's embeddings
(2, 256)""",
)
@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedImageClassifier(_ImageInput, TestTimeAugmentation, ClassifierTask):
    """Image classifier on a pretrained backbone with a new head, trained with skorch."""

    augment: Any = None
    tta: Any = None

    _parameter_constraints = _PREDICTOR_CONSTRAINTS


@document(
    IMAGE, REGRESSOR, AUGMENT, TTA_PARAM,
    see_also=related("Image", "Classifier", "Embedder"),
    examples="""\
>>> import numpy as np
>>> from sktransfer import PretrainedImageRegressor
>>> rng = np.random.default_rng(0)
>>> X = rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
>>> y = X.mean(axis=(1, 2, 3)) / 255
>>> reg = PretrainedImageRegressor(backbone="test_efficientnet", pretrained=False, random_state=0)
>>> reg.fit(X, y).predict(X[:2]).shape
(2,)""",
)
@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedImageRegressor(_ImageInput, TestTimeAugmentation, RegressorTask):
    """Image regressor on a pretrained backbone with a new head, trained with skorch."""

    augment: Any = None
    tta: Any = None

    _parameter_constraints = _PREDICTOR_CONSTRAINTS


@document(
    IMAGE, EMBEDDER,
    see_also=related("Image", "Classifier", "Regressor"),
    examples="""\
>>> import numpy as np
>>> from sktransfer import PretrainedImageEmbedder
>>> X = np.zeros((3, 32, 32, 3), dtype=np.uint8)
>>> PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit_transform(X).shape
(3, 256)""",
)
@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedImageEmbedder(_ImageInput, EmbedderBase):
    """Transformer returning a pretrained backbone's pooled image embeddings (no training)."""

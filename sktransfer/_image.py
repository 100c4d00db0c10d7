"""The image estimators: classifier, regressor and embedder over one image-input mixin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._backbones import resolve_image_backbone
from ._docs import BACKBONE_PARAMS, CLASSIFIER_PARAMS, COMMON_ATTRIBUTES, TRAINING_PARAMS, compose
from ._embedding import BackboneEstimator, EmbedderBase
from ._image_data import ImageDataset, build_transform, check_images
from ._tasks import ClassifierTask, RegressorTask
from ._training import TrainableEstimator
from ._validation import StrOptions

IMAGE_PARAMS = """\
backbone : str or torch.nn.Module, default="efficientnet_lite0"
    "efficientnet_lite0" (ImageNet weights shipped with sktransfer, works offline), any timm or
    torchvision model name, a local timm model directory, or your own ``nn.Module`` that maps
    (N, 3, H, W) images to features."""

IMAGE_INPUT = """
Images may be a list, array or pandas Series of file paths, PIL images or uint8 arrays (H, W) or
(H, W, C), or one (N, H, W, C) array. Paths are read lazily, batch by batch. Grayscale, palette,
16-bit, CMYK and RGBA images are converted to RGB (alpha over white; first frame of an animation).
Float arrays are read as [0, 1] when their maximum is at most 1, else as [0, 255].
Preprocessing (resize, crop, mean and std) follows the backbone's own data config."""

AUGMENT_PARAM = """\
augment : {"light", "standard"}, callable or None, default=None
    Training-time augmentation (torchvision transforms v2): "light" is a random resized crop and
    flip, "standard" adds colour jitter; a callable is applied to each PIL image before the
    backbone's preprocessing. Never applied at predict time."""


@dataclass(repr=False, eq=False, kw_only=True)
class _ImageInput(BackboneEstimator):
    backbone: Any = "efficientnet_lite0"

    def _check_inputs(self, X) -> list:
        return check_images(X)

    def _resolve_backbone(self):
        return resolve_image_backbone(self.backbone, self.pretrained)

    def _make_dataset(self, items, y=None, sample_weight=None, augment=None):
        return ImageDataset(items, build_transform(self.data_config_, augment), y, sample_weight)

    def _collate_fn(self):
        return None

    def _preprocessing_key(self) -> str:
        return repr(sorted(self.data_config_.items()))

    def _can_cache_prefix(self) -> bool:
        return True

    def _export_inputs(self, folder) -> tuple[list[str], tuple, dict]:
        return ["pixel_values"], (torch.zeros(2, *self.data_config_["input_size"]),), {"pixel_values": {0: "batch"}}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


@dataclass(repr=False, eq=False, kw_only=True)
class _ImageTraining(_ImageInput, TrainableEstimator):
    augment: Any = None

    _parameter_constraints = {"augment": [StrOptions({"light", "standard"}), callable, None]}

    def _augment(self):
        return self.augment


@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedImageClassifier(_ImageTraining, ClassifierTask):
    pass


@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedImageRegressor(_ImageTraining, RegressorTask):
    pass


@dataclass(repr=False, eq=False, kw_only=True)
class PretrainedImageEmbedder(_ImageInput, EmbedderBase):
    pass


PretrainedImageClassifier.__doc__ = compose(
    "Image classifier on a pretrained backbone with a new head, trained with skorch.\n" + IMAGE_INPUT,
    IMAGE_PARAMS, BACKBONE_PARAMS, TRAINING_PARAMS, CLASSIFIER_PARAMS, AUGMENT_PARAM,
    examples="""\
>>> import numpy as np
>>> from sktransfer import PretrainedImageClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
>>> y = ["cat", "dog"] * 4
>>> clf = PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False,
...                                 max_epochs=2, random_state=0)
>>> clf.fit(X, y).predict(X[:2]).shape
(2,)
>>> clf.classes_.tolist()
['cat', 'dog']""",
) + f"\nAttributes\n----------\nclasses_ : ndarray\n    The labels seen in fit.\n{COMMON_ATTRIBUTES}\n"

PretrainedImageRegressor.__doc__ = compose(
    "Image regressor on a pretrained backbone; targets are standardised inside and restored.\n" + IMAGE_INPUT,
    IMAGE_PARAMS, BACKBONE_PARAMS, TRAINING_PARAMS, AUGMENT_PARAM,
) + f"\nAttributes\n----------\n{COMMON_ATTRIBUTES}\n"

PretrainedImageEmbedder.__doc__ = compose(
    "Transformer returning a pretrained backbone's pooled image embeddings (no training).\n" + IMAGE_INPUT,
    IMAGE_PARAMS, BACKBONE_PARAMS,
    examples="""\
>>> import numpy as np
>>> from sktransfer import PretrainedImageEmbedder
>>> X = np.zeros((3, 32, 32, 3), dtype=np.uint8)
>>> PretrainedImageEmbedder(backbone="test_efficientnet", pretrained=False).fit_transform(X).shape
(3, 256)""",
)

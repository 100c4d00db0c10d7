"""sktransfer: pretrained deep networks as scikit-learn estimators."""

from ._cache import feature_cache
from ._image import PretrainedImageClassifier, PretrainedImageEmbedder, PretrainedImageRegressor
from ._image_data import load_image_folder
from ._text import PretrainedTextClassifier, PretrainedTextEmbedder, PretrainedTextRegressor

__version__ = "0.1.0"

__all__ = [
    "PretrainedImageClassifier",
    "PretrainedImageEmbedder",
    "PretrainedImageRegressor",
    "PretrainedTextClassifier",
    "PretrainedTextEmbedder",
    "PretrainedTextRegressor",
    "feature_cache",
    "load_image_folder",
]

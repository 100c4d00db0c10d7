"""sktransfer: pretrained deep networks as scikit-learn estimators."""

from ._cache import feature_cache
from ._domain import merge_domains
from ._image import PretrainedImageClassifier, PretrainedImageEmbedder, PretrainedImageRegressor
from ._image_data import load_image_folder
from ._persistence import load
from ._text import PretrainedTextClassifier, PretrainedTextEmbedder, PretrainedTextRegressor
from .datasets import load_sentiment_sample

__version__ = "0.1.0"

__all__ = [
    "PretrainedImageClassifier",
    "PretrainedImageEmbedder",
    "PretrainedImageRegressor",
    "PretrainedTextClassifier",
    "PretrainedTextEmbedder",
    "PretrainedTextRegressor",
    "feature_cache",
    "load",
    "load_image_folder",
    "load_sentiment_sample",
    "merge_domains",
]

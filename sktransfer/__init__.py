"""sktransfer: pretrained deep networks as scikit-learn estimators."""

from ._adapters import LoRA
from ._cache import feature_cache
from ._domain import merge_domains
from ._explain import explain
from ._explanation import Explanation
from ._few_shot import Contrastive
from ._image import PretrainedImageClassifier, PretrainedImageEmbedder, PretrainedImageRegressor
from ._image_data import load_image_folder
from ._lr_finder import LRFinderResult
from ._optuna import OptunaPruning
from ._persistence import load
from ._quantize import quantize_int8
from ._runtimes import ONNXRuntime, OpenVINO
from ._semi_supervised import SelfTraining
from ._text import PretrainedTextClassifier, PretrainedTextEmbedder, PretrainedTextRegressor
from ._tta import TTA
from ._weights_cache import backbone_cache
from .datasets import load_sentiment_sample

__version__ = "0.1.0"

__all__ = [
    "Contrastive",
    "Explanation",
    "LRFinderResult",
    "LoRA",
    "ONNXRuntime",
    "OpenVINO",
    "OptunaPruning",
    "PretrainedImageClassifier",
    "PretrainedImageEmbedder",
    "PretrainedImageRegressor",
    "PretrainedTextClassifier",
    "PretrainedTextEmbedder",
    "PretrainedTextRegressor",
    "SelfTraining",
    "TTA",
    "backbone_cache",
    "explain",
    "feature_cache",
    "load",
    "load_image_folder",
    "load_sentiment_sample",
    "merge_domains",
    "quantize_int8",
]

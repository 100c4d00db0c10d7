"""Test-time augmentation of images: outputs averaged over views of each image, blended with the plain pass.

As fastai's ``Learner.tta``: the model predicts a few augmented views of every image, their outputs
(probabilities, or a regressor's values) are averaged, and the mean is blended with the plain pass's
outputs, ``beta * plain + (1 - beta) * mean(views)``. The views are deterministic, as fastai 1's were: the
image mirrored, and regions of it (the centre and the four corners, each ``1 / zoom`` of its width and
height: torchvision's ``five_crop``), each then preprocessed as the backbone preprocesses every image
(resize the shorter side, centre crop, normalise). A view is a field of the feature cache's
:class:`~sktransfer._cache.EmbeddingKey`, so a frozen backbone's views are embedded once and reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np
from PIL import Image
from sklearn.base import BaseEstimator

from ._image_data import EvalTransform
from ._persistence import register_parameter_object
from ._validation import Interval, positive_int, resolve_parameter_object

_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")  # five_crop's order


@dataclass(frozen=True)
class View:
    """One view of an image: the region ``1 / zoom`` of its sides at ``position`` (the whole image at zoom 1),
    mirrored when ``flip``; the backbone's preprocessing then runs on it as on any image."""

    zoom: float = 1.0
    position: str = "center"
    flip: bool = False

    def __call__(self, image: Image.Image) -> Image.Image:
        from torchvision.transforms.v2 import functional as F

        if self.zoom > 1:
            width, height = image.size
            size = [max(1, round(height / self.zoom)), max(1, round(width / self.zoom))]
            image = F.five_crop(image, size)[_POSITIONS.index(self.position)]
        return F.horizontal_flip(image) if self.flip else image

    def transform(self, preprocess: Callable) -> Callable:
        """``preprocess`` (the backbone's eval transform) applied to this view of each image."""
        from torchvision.transforms import v2

        return ViewTransform(self, preprocess) if isinstance(preprocess, EvalTransform) else v2.Compose(
            [self, preprocess])


class ViewTransform(EvalTransform):
    """A view, then the :class:`EvalTransform` it was given: still one, so batches decode in parallel."""

    def __init__(self, view: View, preprocess: EvalTransform):
        self.__dict__.update(vars(preprocess))
        self.view = view

    def __call__(self, image: Image.Image):
        return super().__call__(self.view(image))


class TTA(BaseEstimator):
    """Test-time augmentation: the value of an image classifier's or regressor's ``tta``.

    ``predict``, ``predict_proba`` and ``score`` run the model on ``n_views`` views of every image besides
    the image itself, and blend the two as fastai's ``tta`` does: ``beta * plain + (1 - beta) * mean(views)``
    of what the head outputs (a classifier's probabilities, a multi-output classifier's logits, a
    regressor's values). The views are deterministic, taken in this order: the image mirrored (``flip``);
    its centre region, ``1 / zoom`` of its width and height, then that region mirrored; the four corner
    regions of the same size; the four mirrored. Each view is preprocessed as the backbone preprocesses any
    image (its ``data_config_``: resize, centre crop, normalise). Each view costs one more pass of the
    backbone over the images, except where a frozen backbone's embeddings of that view are in the feature
    cache. Its parameters are the estimator's nested parameters (``tta__beta``), so a grid search can tune
    them.

    Parameters
    ----------
    n_views : int, default=4
        Views besides the plain image: at most 11 with ``flip`` (5 without), and 1 (the mirror) with
        ``zoom=1``.
    beta : float in [0, 1], default=0.25
        Weight of the plain pass in the blend (fastai's ``beta``); 0: the views alone.
    flip : bool, default=True
        Whether mirrored views are taken (turn it off where left and right differ: text, some medical
        images).
    zoom : float >= 1, default=1.25
        How much the region views zoom in: each covers ``1 / zoom`` of the image's width and height.

    See Also
    --------
    PretrainedImageClassifier : Its ``tta`` parameter takes a ``TTA`` (an int ``n`` is ``TTA(n_views=n)``).

    Examples
    --------
    >>> from sktransfer import PretrainedImageClassifier, TTA
    >>> clf = PretrainedImageClassifier(tta=TTA(n_views=2, beta=0.5))
    >>> clf.get_params()["tta__n_views"]
    2
    >>> TTA(n_views=2).views()
    [View(zoom=1.0, position='center', flip=True), View(zoom=1.25, position='center', flip=False)]
    """

    _parameter_constraints = {
        "n_views": [positive_int],
        "beta": [Interval(Real, 0, 1, closed="both")],
        "flip": ["boolean"],
        "zoom": [Interval(Real, 1, None, closed="left")],
    }

    def __init__(self, *, n_views: int = 4, beta: float = 0.25, flip: bool = True, zoom: float = 1.25):
        self.n_views = n_views
        self.beta = beta
        self.flip = flip
        self.zoom = zoom

    def views(self) -> list[View]:
        """The views taken besides the plain image, in order.

        Returns
        -------
        views : list of View
            ``n_views`` views: a region (``zoom``, ``position``), mirrored or not (``flip``).
        """
        flips = (False, True) if self.flip else (False,)
        available = [View(flip=True)] if self.flip else []
        if self.zoom > 1:
            zoom = float(self.zoom)
            available += [View(zoom, "center", flip) for flip in flips]
            available += [View(zoom, position, flip) for flip in flips for position in _POSITIONS[:4]]
        if self.n_views > len(available):
            raise ValueError(
                f"TTA(n_views={self.n_views}) asks for more views than flip={self.flip} and zoom={self.zoom} give "
                f"({len(available)}): lower n_views, or set flip=True and a zoom above 1 (up to 11 views)."
            )
        return available[: self.n_views]


register_parameter_object(TTA)

TTA_PARAMETERS = {"tta": [Interval(Integral, 1, None, closed="left"), TTA, None]}


def resolve_tta(value: Any) -> TTA | None:
    """The :class:`TTA` a ``tta`` value stands for (an int ``n`` is ``TTA(n_views=n)``), checked; None: none."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"tta={value!r}: the number of views must be at least 1; use tta=None for no views.")
        value = TTA(n_views=int(value))
    if value is not None and not isinstance(value, TTA):
        raise TypeError(f"tta must be None, a number of views (int >= 1) or a TTA(...), got {value!r}.")
    tta = resolve_parameter_object(value, TTA)
    if tta is not None:
        tta.views()
    return tta


class TestTimeAugmentation:
    """Mixin of the image estimators that predict: ``tta`` blends their outputs with those of views."""

    def _validate(self) -> None:
        super()._validate()
        resolve_tta(self.tta)

    def _item_outputs(self, items: list) -> np.ndarray:
        plain = super()._item_outputs(items)
        tta = resolve_tta(self.tta)
        if tta is None:
            return plain
        views = [super(TestTimeAugmentation, self._viewing(view))._item_outputs(items) for view in tta.views()]
        return (tta.beta * plain + (1 - tta.beta) * np.mean(views, axis=0)).astype(plain.dtype, copy=False)

    def _viewing(self, view: View):
        """A shallow copy of this fitted estimator whose inputs are ``view`` of each image (concurrent
        predictions never see another's view)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(vars(self), _view=view)
        return copy

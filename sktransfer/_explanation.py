"""The result of :func:`sktransfer.explain`: attributions per input, their pictures and their HTML."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ._plotting import _pyplot

_POSITIVE, _NEGATIVE = (220, 38, 38), (37, 99, 235)
_HTML_ITEMS = 12


@dataclass(repr=False, eq=False, kw_only=True)
class Explanation:
    """Attributions of a fitted model's predictions: a map per image, or a score per word.

    Returned by :func:`sktransfer.explain` and by the ``explain`` method of the classifiers and
    regressors. Positive values are evidence for the explained target, negative ones against it. In a
    notebook the object shows itself as HTML: the images with their maps overlaid, the words coloured
    (red for, blue against).

    Parameters
    ----------
    modality : {"image", "text"}
        What was explained.
    method : str
        The attribution method used: ``"gradcam"``, ``"integrated_gradients"`` or ``"occlusion"``.
    attributions : list of ndarray
        Per image an array of shape (height, width) at the image's resolution; per text an array with
        one score per word.
    targets : list
        Per input, what was explained: a class label, ``(output name, class label)`` for a multi-output
        classifier, or an output index for a regressor.
    outputs : ndarray of shape (n_inputs,)
        Per input, the model's output for the explained target: a probability, or a predicted value.
    images : list of ndarray, default=None
        The images, as RGB uint8 arrays of shape (height, width, 3).
    words : list of list of str, default=None
        The words of each text (split at whitespace), one per score.

    See Also
    --------
    sktransfer.explain : Explain a fitted model's, or a Pipeline's, predictions.

    Examples
    --------
    >>> from sktransfer import PretrainedTextClassifier
    >>> X = ["a wonderful film", "great acting", "dull and boring", "a waste of time"] * 3
    >>> y = ["pos", "pos", "neg", "neg"] * 3
    >>> clf = PretrainedTextClassifier(random_state=0).fit(X, y)
    >>> explanation = clf.explain(["a wonderful film"])
    >>> explanation.targets, explanation.words
    (['pos'], [['a', 'wonderful', 'film']])
    >>> explanation.attributions[0].shape
    (3,)
    """

    modality: str
    method: str
    attributions: list
    targets: list
    outputs: np.ndarray
    images: list | None = None
    words: list | None = None

    def __len__(self) -> int:
        return len(self.attributions)

    def __repr__(self) -> str:
        return f"Explanation({self.modality}s: {len(self)}, method={self.method!r})"

    def _caption(self, i: int) -> str:
        target = self.targets[i]
        target = " / ".join(map(str, target)) if isinstance(target, tuple) else str(target)
        return f"{target} ({self.outputs[i]:.3g})"

    def plot(self, max_items: int = 8, n_cols: int = 4) -> Any:
        """Draw the first inputs: each image with its map overlaid, or each text with its words coloured.

        Needs matplotlib (``pip install sktransfer[plot]``). Each panel is titled with the explained
        target and the model's output for it (a probability, or a predicted value).

        Parameters
        ----------
        max_items : int, default=8
            How many inputs to draw, from the first.
        n_cols : int, default=4
            Images per row (texts are drawn one per row).

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        plt = _pyplot("Explanation.plot")
        n = min(max_items, len(self))
        if self.modality == "image":
            cols = min(n_cols, n)
            rows = -(-n // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
            for ax in axes.ravel():
                ax.axis("off")
            for i, ax in zip(range(n), axes.ravel()):
                ax.imshow(overlay(self.images[i], self.attributions[i]))
                ax.set_title(self._caption(i), fontsize=9)
        else:
            lines = [_wrap(self.words[i], self.attributions[i]) for i in range(n)]
            fig, axes = plt.subplots(n, 1, figsize=(9, sum(0.35 * len(rows) + 0.35 for rows in lines)), squeeze=False)
            for i, (ax, rows) in enumerate(zip(axes[:, 0], lines)):
                ax.axis("off")
                ax.set_title(self._caption(i), fontsize=9, loc="left")
                for r, row in enumerate(rows):
                    previous = None
                    for word, colour in row:
                        box = {"facecolor": colour, "edgecolor": "none", "pad": 1.5}
                        if previous is None:
                            previous = ax.text(0, 1 - (r + 0.5) / len(rows), word, bbox=box, va="center",
                                               transform=ax.transAxes)
                        else:
                            previous = ax.annotate(" " + word, xycoords=previous, xy=(1, 0), va="bottom", bbox=box)
        fig.tight_layout()
        return fig

    def _repr_html_(self) -> str:
        n = min(_HTML_ITEMS, len(self))
        cells = []
        for i in range(n):
            caption = html.escape(self._caption(i))
            if self.modality == "image":
                picture = Image.fromarray(overlay(self.images[i], self.attributions[i]))
                picture.thumbnail((192, 192))
                buffer = io.BytesIO()
                picture.save(buffer, format="PNG")
                data = base64.b64encode(buffer.getvalue()).decode()
                cells.append(f'<figure style="display:inline-block;margin:4px"><img src="data:image/png;base64,{data}">'
                             f"<figcaption>{caption}</figcaption></figure>")
            else:
                words = " ".join(
                    f'<span style="background:rgba{colour}" title="{score:.3g}">{html.escape(word)}</span>'
                    for word, score, colour in zip(self.words[i], self.attributions[i],
                                                   word_colours(self.attributions[i])))
                cells.append(f"<div><b>{caption}</b>: {words}</div>")
        more = f"<div>... and {len(self) - n} more</div>" if len(self) > n else ""
        return (f"<div><b>Explanation</b> of {len(self)} {self.modality}s, method {html.escape(self.method)}"
                f"</div>{''.join(cells)}{more}")


def overlay(image: np.ndarray, attribution: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``image`` (RGB uint8) with the positive part of ``attribution`` drawn over it, red to yellow."""
    heat = np.clip(attribution, 0, None)
    top = float(heat.max())
    heat = heat / top if top > 0 else heat
    colour = np.stack([np.full_like(heat, 255.0), 255.0 * heat, np.zeros_like(heat)], axis=-1)
    weight = (alpha * heat)[..., None]
    return (image.astype(np.float32) * (1 - weight) + colour * weight).round().astype(np.uint8)


def word_colours(scores: np.ndarray) -> list[tuple[int, int, int, float]]:
    """An RGBA colour per word: red for positive scores, blue for negative, opacity by size."""
    top = float(np.abs(scores).max()) if len(scores) else 0.0
    return [(*(_POSITIVE if s >= 0 else _NEGATIVE), round(abs(float(s)) / top, 3) if top > 0 else 0.0)
            for s in scores]


def _wrap(words: list[str], scores: np.ndarray, width: int = 90) -> list[list[tuple[str, tuple]]]:
    """Words with matplotlib colours, in lines of at most ``width`` characters."""
    rows, length = [[]], 0
    for word, (r, g, b, a) in zip(words, word_colours(scores)):
        if rows[-1] and length + len(word) + 1 > width:
            rows.append([])
            length = 0
        rows[-1].append((word, (r / 255, g / 255, b / 255, a)))
        length += len(word) + 1
    return rows

"""Small data sets shipped with sktransfer, for examples and quick checks (no download)."""

from __future__ import annotations

import csv
from importlib import resources

__all__ = ["load_sentiment_sample"]


def load_sentiment_sample() -> tuple[list[str], list[str]]:
    """Load 200 short English review sentences labelled ``"positive"`` or ``"negative"``.

    The sentences (films, restaurants, products, hotels) were written for sktransfer and are
    distributed under the BSD-3-Clause license. They come in contrasting pairs, one positive
    then one negative, so the two classes are balanced (100 each).

    Returns
    -------
    texts : list of str
        The 200 sentences.
    labels : list of str
        ``"positive"`` or ``"negative"``, one per sentence.

    Examples
    --------
    >>> from sktransfer import load_sentiment_sample
    >>> texts, labels = load_sentiment_sample()
    >>> len(texts), labels.count("positive"), labels.count("negative")
    (200, 100, 100)
    >>> texts[0], labels[0]
    ('A delightful film with a warm heart and sharp jokes.', 'positive')
    """
    source = resources.files(__package__).joinpath("sentiment_sample.tsv")
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"] for row in rows], [row["label"] for row in rows]

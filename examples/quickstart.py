"""sktransfer quickstart: transfer learning on images and text with the embedded default backbones.

Runs on CPU in a few minutes, offline. Images: the hymenoptera ants/bees photos when
``../shared/data/hymenoptera`` sits beside the repository, else scikit-learn's 8x8 digits.
Text: the sentiment sample shipped with sktransfer. Both use frozen pretrained backbones
(``freeze_layers="all"``) and fit a new linear head to convergence on their embeddings.

Run it with ``python examples/quickstart.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, classification_report
from sklearn.model_selection import train_test_split

from sktransfer import (
    PretrainedImageClassifier,
    PretrainedTextClassifier,
    load_image_folder,
    load_sentiment_sample,
)

HYMENOPTERA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hymenoptera"


def image_data(root: Path = HYMENOPTERA, n_digits: int = 400):
    """Train/test images and labels, and a description: hymenoptera if present, else digits."""
    if root.is_dir():
        X_train, y_train = load_image_folder(root / "train")
        X_test, y_test = load_image_folder(root / "val")
        return X_train, X_test, y_train, y_test, f"hymenoptera ants vs bees ({root})"
    digits = load_digits()
    # 8x8 grey levels 0-16 become uint8 images 0-255; the backbone's preprocessing resizes them.
    images = (digits.images[:n_digits] * (255 / 16)).round().astype(np.uint8)
    X_train, X_test, y_train, y_test = train_test_split(
        images, digits.target[:n_digits], test_size=0.3, stratify=digits.target[:n_digits], random_state=0
    )
    return X_train, X_test, y_train, y_test, f"scikit-learn digits, {n_digits} 8x8 images ({root} is absent)"


def text_data(test_size: float = 0.3):
    """Train/test split of the shipped sentiment sample."""
    texts, labels = load_sentiment_sample()
    X_train, X_test, y_train, y_test = train_test_split(
        texts, labels, test_size=test_size, stratify=labels, random_state=0
    )
    return X_train, X_test, y_train, y_test, "sktransfer's sentiment sample (200 review sentences)"


def evaluate(clf, X_train, X_test, y_train, y_test, description: str) -> float:
    """Fit ``clf``, print its timing and classification report on the test part, return the accuracy."""
    print(f"\n=== {type(clf).__name__} on {description}")
    print(f"train: {len(X_train)} samples, test: {len(X_test)} samples, backbone: {clf.backbone}")
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    fitted = time.perf_counter()
    y_pred = clf.predict(X_test)
    print(f"fit: {fitted - start:.1f} s, predict: {time.perf_counter() - fitted:.1f} s, "
          f"on {clf.device_}, " + (f"head solved with C={clf.C_}" if clf.C_ is not None else f"{clf.n_epochs_} epochs"))
    accuracy = accuracy_score(y_test, y_pred)
    print(f"test accuracy: {accuracy:.3f}")
    print(classification_report(y_test, y_pred, digits=3, zero_division=0))
    return accuracy


def main() -> None:
    start = time.perf_counter()
    # The defaults: a frozen backbone whose embeddings are computed once, and a linear head fitted to
    # convergence on them, as LogisticRegression would be (on standardised embeddings, C = n_classes /
    # their mean squared norm). A text classifier with at most 16 labelled rows per class would tune its
    # backbone contrastively first (contrastive="auto"); these sets have more.
    evaluate(PretrainedImageClassifier(), *image_data())
    evaluate(PretrainedTextClassifier(), *text_data())
    print(f"quickstart done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""
Ants or bees: a frozen backbone and a converged head
====================================================

The default :class:`~sktransfer.PretrainedImageClassifier` embeds each photo once with the packaged
EfficientNet-Lite0 backbone (ImageNet weights, frozen) and solves a linear head to convergence on
those embeddings, as ``LogisticRegression`` would. Here it learns ants against bees from the 245
training photos of the hymenoptera set and is scored on its 153 validation photos.
"""

# %%
# Load the photos
# ---------------
# :func:`~sktransfer.load_image_folder` reads a ``root/<class>/<image>`` tree into file paths and
# labels; the images are decoded lazily, batch by batch.
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score

from sktransfer import PretrainedImageClassifier, load_image_folder

# The shared data sets sit beside the repository; the gallery runs from docs/examples/.
DATA = Path(os.environ.get("SKTRANSFER_DATA", "../../../shared/data"))

X_train, y_train = load_image_folder(DATA / "hymenoptera" / "train")
X_val, y_val = load_image_folder(DATA / "hymenoptera" / "val")
print(f"{len(X_train)} training and {len(X_val)} validation photos, classes {sorted(set(y_train))}")

# %%
# Fit and score
# -------------
# All defaults: the backbone stays frozen (``freeze_layers="auto"`` is ``"all"`` here) and the head is
# solved on the cached embeddings (``C="auto"``); ``random_state`` makes the fit repeatable.
clf = PretrainedImageClassifier(random_state=0).fit(X_train, y_train)
y_pred = clf.predict(X_val)
print(f"validation accuracy: {accuracy_score(y_val, y_pred):.3f}")
print(f"embedding width: {clf.n_features_out_}, C used: {clf.C_:.3g}")

# %%
# Where it errs
# -------------
# The confusion matrix of the validation photos: rows are the true classes, columns the predicted ones.
fig, ax = plt.subplots(figsize=(4, 3.5))
ConfusionMatrixDisplay.from_predictions(y_val, y_pred, ax=ax, colorbar=False)
ax.set_title("hymenoptera validation photos")
fig.tight_layout()

# %%
# The photos it was least sure of, with their predicted probability of the true class.
proba = clf.predict_proba(X_val)
true_column = np.searchsorted(clf.classes_, y_val)
p_true = proba[np.arange(len(y_val)), true_column]
hardest = np.argsort(p_true)[:4]
fig, axes = plt.subplots(1, len(hardest), figsize=(10, 2.8))
for ax, i in zip(axes, hardest):
    with Image.open(X_val[i]) as image:
        ax.imshow(image.convert("RGB"))
    ax.set_title(f"{y_val[i]}: p={p_true[i]:.2f}", fontsize=9)
    ax.axis("off")
fig.tight_layout()

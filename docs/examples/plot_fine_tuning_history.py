"""
A short fine-tune and its training history
==========================================

Partial fine-tuning trains the backbone's top blocks with the new head, by mini-batch epochs. With
``early_stopping=True`` a stratified share of the training photos (``validation_fraction``) is held
out, the model keeps the weights of its best epoch, and
:meth:`~sktransfer.PretrainedImageClassifier.plot_history` draws the losses, the validation accuracy
and the learning rates per epoch. Kept short for the gallery: 120 hymenoptera photos and 4 epochs on
a CPU.
"""

# %%
import os
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from sktransfer import PretrainedImageClassifier, load_image_folder

# The shared data sets sit beside the repository; the gallery runs from docs/examples/.
DATA = Path(os.environ.get("SKTRANSFER_DATA", "../../../shared/data"))

paths, labels = load_image_folder(DATA / "hymenoptera" / "train")
X_train, _, y_train, _ = train_test_split(paths, labels, train_size=120, stratify=labels, random_state=0)
X_val, y_val = load_image_folder(DATA / "hymenoptera" / "val")

# %%
# Train the last two blocks and the head
# --------------------------------------
# ``freeze_layers=-2`` freezes all the backbone's blocks but the last two; their frozen prefix runs
# once per photo (``prefix_cached_``) and each epoch trains only the top. ``lr="auto"`` gives the
# head 1e-3 and the backbone 1e-4, warmed up over the first tenth of the steps.
clf = PretrainedImageClassifier(
    freeze_layers=-2, max_epochs=4, early_stopping=True, validation_fraction=0.2, batch_size=16, random_state=0
)
clf.fit(X_train, y_train)
print(f"best epoch {clf.best_epoch_} of {len(clf.history_)}; learning rates {clf.lr_}")
print(f"frozen prefix cached: {clf.prefix_cached_}")
print(f"validation accuracy: {accuracy_score(y_val, clf.predict(X_val)):.3f}")

# %%
# The training history
# --------------------
# One panel per recorded quantity; the dashed line marks the epoch whose weights the model kept. On
# so few photos the validation loss can rise after an epoch or two, as the top blocks start to fit
# the training photos alone: early stopping then keeps the earlier weights (``patience`` epochs on).
fig = clf.plot_history()

# %%
# The history is skorch's ``History``: every epoch's values, by name.
print(np.round(clf.history_[:, "valid_loss"], 3))

"""Training-history plots (matplotlib is an optional dependency, imported only when plotting)."""

from __future__ import annotations

from typing import Any


def _pyplot(what: str):
    """matplotlib's pyplot, or an ImportError saying that ``what`` needs it and how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            f"{what} needs matplotlib, which is not installed; run `pip install sktransfer[plot]`."
        ) from err
    return plt


def plot_history(history: Any, best_epoch: int) -> Any:
    """Draw loss (train/valid), accuracy (if recorded) and learning rate per epoch.

    Parameters
    ----------
    history : skorch.history.History
        A fitted estimator's ``history_``.
    best_epoch : int
        The 1-based epoch to mark (the one whose weights the estimator kept).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    plt = _pyplot("plot_history")
    epochs = [row["epoch"] for row in history]
    panels = [("loss", ["train_loss", "valid_loss"]), ("accuracy", ["valid_acc"]), ("learning rate", ["lr"])]
    panels = [(title, [k for k in keys if k in history[0]]) for title, keys in panels]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(epochs, [row[key] for row in history], marker="o", label=key)
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    return fig

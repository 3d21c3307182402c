"""Plots the lessons share: image grids, learning curves, accuracy against labels, confusion matrices."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay


def show_images(images: np.ndarray, titles: list[str] | None = None, ncols: int = 8, size: float = 1.3,
                cmap: str = "gray"):
    """A grid of images (grey or RGB) with optional titles, shown as a JPEG (photos compress badly as PNG)."""
    fig, axes = _grid(len(images), titles, ncols, size)
    for i, ax in enumerate(axes):
        ax.imshow(images[i], cmap=cmap if np.ndim(images[i]) == 2 else None)
    fig.tight_layout()
    return as_jpeg(fig)


def _grid(n: int, titles: list[str] | None, ncols: int, size: float) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``n`` titled, axis-free panels (room left for multi-line titles); returns the used axes."""
    nrows = int(np.ceil(n / ncols))
    lines = max((t.count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.15 * lines) * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if titles is not None and i < n:
            ax.set_title(titles[i], fontsize=8)
    return fig, list(axes.flat)[:n]


def as_jpeg(fig: plt.Figure, quality: int = 85):
    """Close a figure and return it as a JPEG image for display: a tenth of the PNG's size in the notebook."""
    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", bbox_inches="tight", pad_inches=0.05,  # titles stay inside the image
                pil_kwargs={"quality": quality})
    plt.close(fig)
    return Image(data=buffer.getvalue(), format="jpeg")


def plot_spread(ax: plt.Axes, x: list[float], runs: np.ndarray, label: str, **style) -> None:
    """Mean over seeds as a line, every seed as a faint dot: ``runs`` is (len(x), seeds)."""
    runs = np.asarray(runs)
    line, = ax.plot(x, runs.mean(axis=1), marker="o", label=label, **style)
    for j in range(runs.shape[1]):
        ax.scatter(x, runs[:, j], s=10, alpha=0.35, color=line.get_color())


def plot_history(history: list[dict], metric: str = "balanced_accuracy") -> plt.Figure:
    """Training loss and a validation metric per epoch, from ``fit``'s history (the loss alone without one)."""
    epochs = [h["epoch"] for h in history]
    validated = all(metric in h for h in history)
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=(8 if validated else 4, 2.8), squeeze=False)
    axes[0, 0].plot(epochs, [h["train_loss"] for h in history], marker="o")
    axes[0, 0].set(xlabel="epoch", ylabel="training loss")
    if validated:
        axes[0, 1].plot(epochs, [h[metric] for h in history], marker="o")
        axes[0, 1].set(xlabel="epoch", ylabel=f"validation {metric.replace('_', ' ')}")
    else:
        axes[0, 0].set_title(f"no validation set: no {metric.replace('_', ' ')} to show", fontsize=9)
    fig.tight_layout()
    return fig


def plot_confusion(labels: np.ndarray, predicted: np.ndarray, class_names: list[str],
                   ax: plt.Axes | None = None) -> ConfusionMatrixDisplay:
    """A confusion matrix with counts (scikit-learn's display)."""
    display = ConfusionMatrixDisplay.from_predictions(labels, predicted, display_labels=class_names, ax=ax,
                                                      colorbar=False, cmap="Blues")
    display.ax_.set_title("rows: true class, columns: predicted")
    return display


def show_heatmaps(images: np.ndarray, heatmaps: np.ndarray, titles: list[str] | None = None, ncols: int = 6,
                  size: float = 1.8):
    """Grey images with a heatmap (0-1) laid over each, as a JPEG."""
    fig, axes = _grid(len(images), titles, ncols, size)
    for i, ax in enumerate(axes):
        ax.imshow(images[i], cmap="gray")
        ax.imshow(heatmaps[i], cmap="jet", alpha=0.4, vmin=0, vmax=1,
                  extent=(-0.5, images[i].shape[1] - 0.5, images[i].shape[0] - 0.5, -0.5))
    fig.tight_layout()
    return as_jpeg(fig)

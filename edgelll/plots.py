"""Figures for a continual-learning run.

matplotlib is imported inside the plotting function so that importing this module stays cheap
on edge devices that never draw anything.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgelll.metrics import ArrayLike, _check_matrix, accuracy_curve


def _default_labels(n: int) -> list[str]:
    return [f"exp {j}" for j in range(n)]


def _draw_heatmap(fig: Any, ax: Any, arr: np.ndarray, labels: list[str]) -> None:
    """Left panel: the accuracy matrix, padded to T x T so unfinished rows show as blank."""
    k, t = arr.shape
    padded = np.full((t, t), np.nan)
    padded[:k] = arr
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.92")
    image = ax.imshow(np.ma.masked_invalid(padded), vmin=0.0, vmax=1.0, cmap=cmap)
    for i in range(k):
        for j in range(t):
            value = arr[i, j]
            # viridis is dark at the low end, so flip the text colour for contrast
            colour = "white" if value < 0.5 else "black"
            ax.text(j, i, f"{100 * value:.1f}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(t), labels, rotation=45, ha="right")
    ax.set_yticks(range(t), labels)
    ax.set_xlabel("test on exp j")
    ax.set_ylabel("after training on exp i")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _draw_curves(ax: Any, arr: np.ndarray, labels: list[str]) -> None:
    """Right panel: accuracy on each experience from its own step on, plus the average."""
    k, t = arr.shape
    for j in range(k):
        steps = np.arange(j, k)
        ax.plot(steps, arr[j:, j], marker="o", markersize=3, linewidth=1, label=labels[j])
    ax.plot(np.arange(k), accuracy_curve(arr), color="black", linewidth=3, label="average")
    ax.set_xticks(range(t), labels, rotation=45, ha="right")
    ax.set_xlim(-0.3, t - 0.7)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("after training on exp i")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    if k <= 10:  # a legend for dozens of experiences would hide the curves
        ax.legend(fontsize=7, loc="lower left")


def _render(arr: np.ndarray, target: str, title: str, labels: list[str]) -> None:
    # Figure with its own Agg canvas: no pyplot, so no global backend switch and no figure
    # registry to leak into, even when called from a notebook or a long-running process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _draw_heatmap(fig, left, arr, labels)
    _draw_curves(right, arr, labels)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(target, format="png", dpi=110)


def save_accuracy_plot(
    R: ArrayLike,
    path: str | os.PathLike[str],
    title: str = "",
    labels: list[str] | None = None,
) -> None:
    """Write a PNG with the accuracy heatmap and the per-experience accuracy curves.

    ``R`` may be partially filled (``k x T``). The file is replaced atomically, so a reader
    polling it during a run never sees a half-written image.
    """
    arr = _check_matrix(R)
    t = arr.shape[1]
    if labels is None:
        labels = _default_labels(t)
    elif len(labels) != t:
        raise ValueError(f"need {t} labels, one per experience, got {len(labels)}")
    target = Path(path)
    # Same directory as the target so os.replace stays a rename on one filesystem.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        _render(arr, tmp, title, list(labels))
        # mkstemp makes the file owner-only; a plot is meant to be read by others too
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

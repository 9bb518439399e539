"""Figures and tables of a run's accuracy matrix, as a person reads them.

Everything a person reads numbers experiences from 1 (the terminal does too) and shows accuracy in
percent: the heat map's cells and colour bar, the curves, and the title, which gives the final ACC
and the classes. A cell for an experience not yet trained on (j > i) is left blank rather than
drawn as a score: in the class scenario it is 0 by construction, and in the others it is FWT's
zero-shot accuracy, which ``metrics.json`` and ``acc_matrix.csv`` keep.

matplotlib is imported inside the plotting functions so that importing this module stays cheap on
edge devices that never draw anything.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgelll.metrics import ArrayLike, _check_matrix, accuracy_curve


def _default_labels(n: int) -> list[str]:
    return [f"exp {j + 1}" for j in range(n)]


def experience_labels(classes: Sequence[Sequence[int]]) -> list[str]:
    """``exp 1: 0,1``-style labels; the classes are left out where there are too many to read."""
    return [f"exp {j + 1}: {','.join(map(str, c))}" if 0 < len(c) <= 4 else f"exp {j + 1}"
            for j, c in enumerate(classes)]


def heat_cells(R: ArrayLike) -> np.ndarray:
    """The ``T x T`` heat map in percent: NaN (drawn blank) for rows not reached yet and for
    experiences not yet trained on (j > i)."""
    arr = _check_matrix(R)
    k, t = arr.shape
    cells = np.full((t, t), np.nan)
    for i in range(k):
        cells[i, : i + 1] = 100.0 * arr[i, : i + 1]
    return cells


def run_title(strategies: Sequence[str], dataset: str, stream: str, scenario: str,
              R: ArrayLike, classes: Sequence[Sequence[int]]) -> str:
    """The title of a run's figure: what ran, on which classes, and the ACC it reached."""
    arr = _check_matrix(R)
    k, t = arr.shape
    n_classes = len({c for cs in classes for c in cs})
    acc = 100.0 * accuracy_curve(arr)[-1]
    reached = f"final ACC {acc:.1f}%" if k == t else f"ACC {acc:.1f}% after {k} of {t}"
    return (f"{'+'.join(strategies)} on {dataset} ({stream}, {scenario} scenario): "
            f"{n_classes} classes in {t} experiences, {reached}")


def _draw_heatmap(fig: Any, ax: Any, arr: np.ndarray, labels: list[str]) -> None:
    """Left panel: R[i][j] in percent after training on each experience; later ones blank."""
    cells = heat_cells(arr)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.92")
    image = ax.imshow(np.ma.masked_invalid(cells), vmin=0.0, vmax=100.0, cmap=cmap)
    for i, j in zip(*np.nonzero(np.isfinite(cells))):
        # viridis is dark at the low end, so flip the text colour for contrast
        colour = "white" if cells[i, j] < 50 else "black"
        ax.text(j, i, f"{cells[i, j]:.1f}", ha="center", va="center", fontsize=8, color=colour)
    t = cells.shape[0]
    ax.set_xticks(range(t), labels, rotation=45, ha="right")
    ax.set_yticks(range(t), labels)
    ax.set_xlabel("tested on experience j")
    ax.set_ylabel("after training on experience i")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("accuracy (%)")


def _draw_curves(ax: Any, arr: np.ndarray, labels: list[str]) -> None:
    """Right panel: accuracy on each experience from its own training on, plus the average."""
    k, t = arr.shape
    for j in range(k):
        ax.plot(np.arange(j, k), 100.0 * arr[j:, j], marker="o", markersize=3, linewidth=1,
                label=labels[j])
    ax.plot(np.arange(k), 100.0 * np.asarray(accuracy_curve(arr)), color="black", linewidth=3,
            label="average (ACC)")
    ax.set_xticks(range(t), labels, rotation=45, ha="right")
    ax.set_xlim(-0.3, t - 0.7)
    ax.set_ylim(0.0, 105.0)
    ax.set_xlabel("after training on experience i")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    if k <= 10:  # a legend for dozens of experiences would hide the curves
        ax.legend(fontsize=7, loc="lower left")


def figure(arr: np.ndarray, title: str, labels: list[str]) -> Any:
    """The two-panel figure (a matplotlib ``Figure`` on its own Agg canvas: no pyplot, so no
    global backend switch and no figure registry to leak into from a notebook)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _draw_heatmap(fig, left, arr, labels)
    _draw_curves(right, arr, labels)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _render(arr: np.ndarray, target: str, title: str, labels: list[str]) -> None:
    figure(arr, title, labels).savefig(target, format="png", dpi=110)


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
    _atomic(Path(path), lambda tmp: _render(arr, tmp, title, list(labels)))


def acc_csv_text(R: ArrayLike, n: int) -> str:
    """``acc_matrix.csv``: R as fractions in 0..1 (as in metrics.json), experiences numbered
    from 1 in the header and in the first column, every cell kept (FWT reads j > i)."""
    rows = [list(map(float, r)) for r in R]
    header = "after_experience," + ",".join(f"exp{j + 1}" for j in range(n))
    lines = [header] + [f"{i + 1}," + ",".join(f"{a:.6f}" for a in row)
                        for i, row in enumerate(rows)]
    return "\n".join(lines) + "\n"


def write_acc_csv(path: str | os.PathLike[str], R: ArrayLike, n: int) -> None:
    from .runs import write_text  # atomic, like every file of a run
    write_text(Path(path), acc_csv_text(R, n))


def _atomic(target: Path, write) -> None:
    # Same directory as the target so os.replace stays a rename on one filesystem.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file owner-only; a plot is meant to be read by others too
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

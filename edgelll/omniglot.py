"""Omniglot (Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic
program induction", Science 350, 2015; MIT licence) as a :class:`~edgelll.data.Dataset`.

The ``.npz`` holds ``x_background`` ``(N, H, W)`` uint8 with ``y_background`` (character index) and
``x_evaluation`` with ``y_evaluation``: the 30 background and 20 evaluation alphabets, disjoint.
Labels: background character ``c`` is class ``c``; evaluation character ``c`` is class
``n_background + c`` (``n_background`` = largest background index + 1).

Test split, fixed and documented: the last ``TEST_DRAWINGS`` = 5 drawings of every character, in
the file's order, are test samples and the others (15 of 20) train, the split of the
meta-continual-learning papers OML (Javed & White 2019, arXiv:1905.12588) and ANML (Beaulieu et al.
2020, arXiv:2002.09571). The background characters are the data set's base pool: an FSCIL base
session (:mod:`edgelll.fscil`) draws from them and its sessions add evaluation characters, from
alphabets the base never saw. Class names ("Alphabet/characterNN") come from
``<stem>_classes.json`` beside the file when it is there (``background.characters`` then
``evaluation.characters``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .data import Dataset, from_arrays, read_npz_arrays
from .errors import DataError

TEST_DRAWINGS = 5
KEYS = ("x_background", "y_background", "x_evaluation", "y_evaluation")


def held_out(y: np.ndarray, n_test: int = TEST_DRAWINGS) -> np.ndarray:
    """True for the last ``n_test`` samples of every class, in array order (no per-sample loop:
    each sample's rank from the end of its class comes from one stable sort)."""
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - np.repeat(starts, counts)
    return counts[y] - rank <= n_test


def _labels(a: np.ndarray, x: np.ndarray, key: str, p: Path) -> np.ndarray:
    if a.ndim != 1 or a.dtype.kind not in "iu" or len(a) != len(x) or (a.size and a.min() < 0):
        raise DataError(f"{p}: {key} must be {len(x)} non-negative integer character indices, one "
                        f"per image (got shape {a.shape}, dtype {a.dtype})")
    return a.astype(np.int64)


def _names(p: Path, n_bg: int, n_ev: int) -> tuple[str, ...] | None:
    f = p.with_name(f"{p.stem}_classes.json")
    if not f.is_file():
        return None
    try:
        raw = json.loads(f.read_text())
        names = list(raw["background"]["characters"]) + list(raw["evaluation"]["characters"])
        sizes = len(raw["background"]["characters"]), len(raw["evaluation"]["characters"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the class names in {f} ({type(exc).__name__}: {exc}); fix "
                        f"or remove the file".splitlines()[0]) from None
    if sizes != (n_bg, n_ev):
        raise DataError(f"{f} names {sizes[0]} background and {sizes[1]} evaluation characters, "
                        f"but {p} has {n_bg} and {n_ev}; use the names file of this data or "
                        f"remove it")
    return tuple(str(n) for n in names)


def load_omniglot(path) -> Dataset:
    """Omniglot from an ``.npz`` of the layout above, split and labelled as described there."""
    p, a = read_npz_arrays(path, KEYS)
    x_bg, x_ev = a["x_background"], a["x_evaluation"]
    if x_bg.ndim != 3 or x_ev.shape[1:] != x_bg.shape[1:]:
        raise DataError(f"{p}: x_background and x_evaluation must be images (N, H, W) of one size, "
                        f"got {x_bg.shape} and {x_ev.shape}")
    y_bg = _labels(a["y_background"], x_bg, "y_background", p)
    y_ev = _labels(a["y_evaluation"], x_ev, "y_evaluation", p)
    n_bg, n_ev = int(y_bg.max()) + 1, int(y_ev.max()) + 1
    y = np.concatenate([y_bg, y_ev + n_bg])
    counts = np.bincount(y)
    few = np.flatnonzero((counts > 0) & (counts <= TEST_DRAWINGS))
    if few.size:
        raise DataError(f"{p}: character {int(few[0])} has {int(counts[few[0]])} drawings; the "
                        f"Omniglot split holds out the last {TEST_DRAWINGS} of each character, "
                        f"so every one needs at least {TEST_DRAWINGS + 1}")
    x = np.concatenate([x_bg, x_ev])
    test = held_out(y)
    try:
        ds = from_arrays(x[~test], y[~test], x[test], y[test], name="omniglot", source=str(p))
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from None
    return dataclasses.replace(ds, base_pool=tuple(int(c) for c in np.unique(y_bg)),
                               class_names=_names(p, n_bg, n_ev))

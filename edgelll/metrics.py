"""Continual-learning metrics over an accuracy matrix.

``R[i][j]`` is the test accuracy on experience ``j`` after training on experience ``i``. During a
run only the first ``k`` rows are known, so every function takes a ``k x T`` matrix with
``k <= T`` and treats row ``k - 1`` as "now". ``b[j]`` is the accuracy of a randomly initialised
model on experience ``j``.

References:

* ACC, BWT and FWT: D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
  Learning", NeurIPS 2017, arXiv:1706.08840, section 2.
* Forgetting: A. Chaudhry, P. K. Dokania, T. Ajanthan and P. H. S. Torr, "Riemannian Walk for
  Incremental Learning: Understanding Forgetting and Intransigence", ECCV 2018, arXiv:1801.10112.
* FSCIL sessions: X. Tao et al., "Few-Shot Class-Incremental Learning", CVPR 2020,
  arXiv:2004.10956 (accuracy on all classes seen after each session), and the session table of
  later FSCIL papers (first, last, average over sessions, and the performance drop
  first - last, e.g. CEC, Zhang et al. 2021, arXiv:2104.03047). With ``n_j`` test samples in
  experience ``j``, the accuracy on the union of experiences ``a..b`` after step ``i`` is
  ``sum_j n_j R[i][j] / sum_j n_j`` over ``a <= j <= b``: exactly the accuracy on that union.

Invalid matrices raise :class:`ValueError`: they come from code, never from a user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np

ArrayLike = Union[np.ndarray, Sequence[Sequence[float]]]
VectorLike = Union[np.ndarray, Sequence[float]]


def _as_unit_array(values: Any, what: str) -> np.ndarray:
    """``values`` as a float array whose entries are finite and in [0, 1]."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:  # ragged lists or non-numbers
        raise ValueError(f"{what} is not a numeric array: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} has non-finite values")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"{what} has values outside [0, 1]")
    return arr


def _check_matrix(R: ArrayLike) -> np.ndarray:
    """``R`` as a validated ``k x T`` float array with ``1 <= k <= T``."""
    arr = _as_unit_array(R, "accuracy matrix")
    if arr.ndim != 2:
        raise ValueError(f"accuracy matrix must be 2-D, got shape {arr.shape}")
    rows, cols = arr.shape
    if rows < 1 or rows > cols:
        raise ValueError(f"accuracy matrix must have 1 <= rows <= cols, got shape {arr.shape}")
    return arr


def _check_baseline(b: VectorLike, cols: int) -> np.ndarray:
    """``b`` as a validated vector with one entry per experience."""
    arr = _as_unit_array(b, "baseline accuracies")
    if arr.shape != (cols,):
        raise ValueError(f"baseline accuracies must have shape ({cols},), got {arr.shape}")
    return arr


def average_accuracy(R: ArrayLike) -> float:
    """ACC: mean accuracy of the latest model over the experiences trained so far."""
    arr = _check_matrix(R)
    k = arr.shape[0]
    return float(arr[k - 1, :k].mean())


def accuracy_curve(R: ArrayLike) -> list[float]:
    """ACC after each finished training step ``i``: the mean of ``R[i, :i+1]``."""
    arr = _check_matrix(R)
    return [float(arr[i, : i + 1].mean()) for i in range(arr.shape[0])]


def backward_transfer(R: ArrayLike) -> float:
    """BWT: how much training on later experiences changed accuracy on earlier ones.

    Negative values mean forgetting. Zero with a single row, where nothing came later.
    """
    arr = _check_matrix(R)
    k = arr.shape[0]
    if k == 1:
        return 0.0
    earlier = np.arange(k - 1)
    return float((arr[k - 1, earlier] - arr[earlier, earlier]).mean())


def forward_transfer(R: ArrayLike, b: VectorLike) -> float:
    """FWT: accuracy on each experience just before training on it, above the random baseline.

    Zero with a single row, where no experience has been seen ahead of its own training step.
    """
    arr = _check_matrix(R)
    base = _check_baseline(b, arr.shape[1])
    k = arr.shape[0]
    if k == 1:
        return 0.0
    later = np.arange(1, k)
    return float((arr[later - 1, later] - base[later]).mean())


def forgetting(R: ArrayLike) -> float:
    """Chaudhry's average forgetting after the latest step.

    Uses the best accuracy ever reached on an experience, not the one right after its own
    training, so a gain from later experiences that is then lost still counts as forgotten.
    """
    arr = _check_matrix(R)
    k = arr.shape[0]
    if k == 1:
        return 0.0
    best = arr[: k - 1, : k - 1].max(axis=0)
    return float((best - arr[k - 1, : k - 1]).mean())


def summarize(R: ArrayLike, b: VectorLike) -> dict[str, Any]:
    """All metrics as plain Python floats, ready for ``json.dump``."""
    return {
        "acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R, b),
        "forgetting": forgetting(R),
        "acc_curve": accuracy_curve(R),
    }


def _weighted(row: np.ndarray, n: np.ndarray, lo: int, hi: int) -> float | None:
    """Accuracy on the union of experiences ``lo..hi-1`` (None when that range is empty)."""
    if hi <= lo:
        return None
    return float((row[lo:hi] * n[lo:hi]).sum() / n[lo:hi].sum())


def session_accuracies(R: ArrayLike, test_counts: VectorLike, base: int = 1) -> dict[str, list]:
    """Per finished session ``i`` (row of ``R``): accuracy on all classes seen (experiences
    ``0..i``), on the base classes (the first ``base`` experiences) and on the new classes
    (experiences ``base..i``; None while there are none), each weighted by test counts."""
    arr = _check_matrix(R)
    n = np.asarray(test_counts, dtype=float)
    if n.shape != (arr.shape[1],) or not np.all(n > 0):
        raise ValueError(f"test counts must be {arr.shape[1]} positive numbers, got {test_counts}")
    rows = range(arr.shape[0])
    return {"all": [_weighted(arr[i], n, 0, i + 1) for i in rows],
            "base": [_weighted(arr[i], n, 0, min(base, i + 1)) for i in rows],
            "new": [_weighted(arr[i], n, base, i + 1) for i in rows]}


def session_table(all_seen: VectorLike) -> dict[str, float]:
    """The FSCIL session table from the accuracy on all seen classes after each session: first
    (the base session), last, the average over sessions, and the drop from first to last."""
    arr = _as_unit_array(all_seen, "session accuracies")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"session accuracies must be a non-empty vector, got shape {arr.shape}")
    return {"first": float(arr[0]), "last": float(arr[-1]), "average": float(arr.mean()),
            "drop": float(arr[0] - arr[-1])}


def fscil_summary(R: ArrayLike, test_counts: VectorLike) -> dict[str, Any]:
    """Per-session accuracies and the session table, plain values for ``metrics.json``."""
    per = session_accuracies(R, test_counts)
    return {"sessions": per, **session_table(per["all"]),
            "test_counts": [int(c) for c in test_counts]}


def cluster_agreement(assign: VectorLike, labels: VectorLike) -> dict[str, float]:
    """How well an unsupervised ``assign``-ment of samples to clusters recovers their ``labels``:
    purity (each cluster counted as its most common label), normalised mutual information
    (arithmetic-mean normalisation, ``MI / ((H(labels) + H(clusters)) / 2)``; Strehl & Ghosh
    2002 use the geometric mean) and the adjusted Rand index (Hubert & Arabie 1985), all from
    the contingency table. 1 is a perfect recovery; ARI is 0 in expectation for a random one."""
    a, y = np.asarray(assign).reshape(-1), np.asarray(labels).reshape(-1)
    if a.shape != y.shape or a.size == 0:
        raise ValueError(f"need one cluster per label, got {a.shape} and {y.shape}")
    _, ai = np.unique(a, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    table = np.zeros((yi.max() + 1, ai.max() + 1))
    np.add.at(table, (yi, ai), 1)
    n = float(a.size)
    rows, cols = table.sum(axis=1), table.sum(axis=0)

    def entropy(counts):
        p = counts[counts > 0] / n
        return float(-(p * np.log(p)).sum())

    nz = table > 0
    mi = float((table[nz] / n * np.log(table[nz] * n / np.outer(rows, cols)[nz])).sum())
    h = (entropy(rows) + entropy(cols)) / 2
    pairs = lambda c: (c * (c - 1) / 2).sum()  # noqa: E731
    index, expected = pairs(table), pairs(rows) * pairs(cols) / (n * (n - 1) / 2)
    top = (pairs(rows) + pairs(cols)) / 2
    return {"purity": float(table.max(axis=0).sum() / n),
            "nmi": mi / h if h > 0 else 1.0,
            "ari": float((index - expected) / (top - expected)) if top != expected else 1.0}

"""Within-class whitening of a frozen extractor's features, fitted in closed form on the last
experience that trains the backbone (the base session of a few-shot stream), for the heads that
learn without gradients.

A backbone trained on a few classes spreads their samples along directions that say nothing
about new classes; distances (NCM, prototypes, neural gas) and Hebbian responses weigh those
directions as much as the telling ones. Whitening by the pooled within-class covariance of the
base data is the shared-covariance Gaussian (Fisher's linear discriminant, Fisher 1936; Mensink
et al. 2013 learn such a metric for NCM, FeCAM, Goswami et al. 2023, arXiv:2309.14062, fits it in
closed form for exemplar-free class-incremental learning): nearest class mean after it is the
Bayes rule of classes that share one covariance. With ``m = trace(S) / D`` and ``S = V diag(l) V^T``
the pooled within-class scatter of the base data (mean ``mu``):

    P = V diag( sqrt((1 + s) m / (l + s m)) ) V^T,        whiten(x) = (x - mu) P,

a symmetric (ZCA) map, shrunk by ``s`` toward the identity: ``s = 0`` whitens fully
(``P S P = m I``), a large ``s`` only centres (``P -> I``), so the features keep their scale and
their coordinates. ``shrink="auto"`` chooses ``s`` from :data:`SHRINK_GRID` on the base data
alone: class folds (up to 5) play new classes, learned by NCM from ``shots`` samples each after
a whitening fitted on the other classes; the class-balanced NCM accuracy on held-out rows picks
``s`` (the larger among ties). No test data and no new class is seen.

numpy only (float64), so that training (``edgelll learn --whiten``) and a device fit the same
map from the same features; the model applies it as a fixed layer (``edgelll.models.Whiten``),
inside the exported extractor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

SHRINK_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
FOLDS, MAX_TEST_ROWS = 5, 100  # class folds of the auto choice; held-out rows a class at most


@dataclass(frozen=True)
class Whitening:
    mean: np.ndarray  # (D,) float32
    proj: np.ndarray  # (D, D) float32, symmetric
    shrink: float
    scores: dict | None = None  # the auto choice: shrink -> class-balanced NCM accuracy

    def __call__(self, feats) -> np.ndarray:
        """``(feats - mean) @ proj`` for features ``(N, D)``."""
        x = np.asarray(feats, np.float32).reshape(len(feats), -1)
        return (x - self.mean) @ self.proj


class _Stats:
    """Per-class sums and counts and the Gram matrix of the rows: every fold's pooled scatter
    follows from them and the Gram of its left-out rows, without recentring the data."""

    def __init__(self, x: np.ndarray, inv: np.ndarray, n_classes: int) -> None:
        self.counts = np.bincount(inv, minlength=n_classes).astype(np.float64)
        order = np.argsort(inv, kind="stable")
        starts = np.concatenate([[0], np.cumsum(self.counts[:-1])]).astype(np.int64)
        self.sums = np.add.reduceat(x[order], starts, axis=0)
        self.gram = x.T @ x

    def scatter(self, keep: np.ndarray, gram_out: np.ndarray | None = None):
        """``(mean, pooled within-class scatter)`` of the classes ``keep`` (bool ``(C,)``),
        given the Gram of the other classes' rows."""
        gram = self.gram if gram_out is None else self.gram - gram_out
        n, sums = self.counts[keep], self.sums[keep]
        between = (sums / n[:, None]).T @ sums
        total = n.sum()
        return sums.sum(0) / total, (gram - between) / total


def _weights(lam: np.ndarray, m: float, s: float) -> np.ndarray:
    return np.sqrt((1.0 + s) * m / np.maximum(np.maximum(lam, 0.0) + s * m, 1e-6 * m))


def _check(feats, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(feats, np.float64)
    x = x.reshape(len(x), -1)
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise DataError(f"whitening needs one label per feature row, got {len(x)} rows and "
                        f"{len(y)} labels")
    classes, inv = np.unique(y, return_inverse=True)
    if len(classes) < 2 or len(y) <= len(classes):
        raise DataError(f"whitening is fitted on the within-class spread of at least 2 classes "
                        f"with more samples than classes; got {len(classes)} class(es) and "
                        f"{len(y)} sample(s): fit it on the base session's data")
    if not np.isfinite(x).all():
        raise DataError("the features to fit the whitening on are not all finite")
    return x, classes, inv


def choose_shrink(feats, y, shots: int = 5, seed: int = 0,
                  grid: tuple[float, ...] = SHRINK_GRID) -> tuple[float, dict]:
    """The shrinkage of :func:`fit_whitening` that new classes learned from ``shots`` samples
    by NCM would profit from most, estimated on the given (base) data alone (module docstring);
    returns ``(shrink, {shrink: score})``."""
    x, classes, inv = _check(feats, y)
    c = len(classes)
    rng = np.random.default_rng([seed, 0x3A17E])
    folds = min(FOLDS, c)
    order = rng.permutation(c)
    rows = [rng.permutation(np.flatnonzero(inv == k)) for k in range(c)]
    stats = _Stats(x, inv, c)
    scores = np.zeros(len(grid))
    for f in range(folds):
        novel = np.zeros(c, bool)
        novel[order[f::folds]] = True
        if (~novel).sum() < 2:
            continue
        out = x[novel[inv]]
        mu, scatter = stats.scatter(~novel, out.T @ out)
        lam, vec = np.linalg.eigh(scatter)
        m = max(float(np.trace(scatter)) / len(scatter), 1e-12)
        protos, test = np.zeros((c, x.shape[1])), []
        for k in range(c):
            r = rows[k]
            n_tr = min(shots, len(r) - 1) if novel[k] else len(r) - max(1, len(r) // 5)
            n_tr = max(n_tr, 1)
            protos[k] = x[r[:n_tr]].mean(0)
            test.append(r[n_tr:][:MAX_TEST_ROWS])
        t = np.concatenate(test)
        if len(t) == 0:
            continue
        zt, zp = (x[t] - mu) @ vec, (protos - mu) @ vec
        truth = inv[t]
        seen = np.bincount(truth, minlength=c) > 0
        for g, s in enumerate(grid):
            w = _weights(lam, m, s)
            a, b = zt * w, zp * w
            d = (b * b).sum(1)[None, :] - 2.0 * a @ b.T
            right = np.bincount(truth, weights=d.argmin(1) == truth, minlength=c)
            scores[g] += float((right[seen] / np.bincount(truth, minlength=c)[seen]).mean())
    best = max(range(len(grid)), key=lambda g: (round(scores[g], 12), grid[g]))
    return float(grid[best]), {float(s): float(v / folds) for s, v in zip(grid, scores)}


def fit_whitening(feats, y, shrink: float | str = "auto", shots: int = 5,
                  seed: int = 0) -> Whitening:
    """The whitening of the module docstring from features ``(N, D)`` and their labels."""
    scores = None
    if shrink == "auto":
        shrink, scores = choose_shrink(feats, y, shots, seed)
    elif not (isinstance(shrink, (int, float)) and np.isfinite(shrink) and shrink >= 0):
        raise DataError(f"whitening shrink must be 'auto' or a number >= 0, got {shrink!r}")
    x, classes, inv = _check(feats, y)
    mean, scatter = _Stats(x, inv, len(classes)).scatter(np.ones(len(classes), bool))
    lam, vec = np.linalg.eigh(scatter)
    m = max(float(np.trace(scatter)) / len(scatter), 1e-12)
    proj = (vec * _weights(lam, m, float(shrink))) @ vec.T
    proj = (proj + proj.T) / 2.0  # symmetric to the last bit
    return Whitening(mean.astype(np.float32), proj.astype(np.float32), float(shrink), scores)

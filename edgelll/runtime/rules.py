"""Closed-form head rules, written once against the Python array API standard so that the same
function runs on numpy arrays (the device runtime, no torch) and on torch tensors (training, CPU
or CUDA); ``array_api_compat.array_namespace`` picks the library from the arrays given.

Nearest class mean (Mensink et al. 2013, "Distance-based image classification", TPAMI; the
classifier iCaRL uses over exemplars, Rebuffi et al. 2017, arXiv:1611.07725, Algorithm 1):

    s_c = sum of phi(x) over the samples of class c,   n_c = their count,
    mu_c = s_c / n_c,                                  y*(x) = argmin_c || phi(x) - mu_c ||.

With ``cosine`` every feature is L2-normalised before it is summed and every mean re-normalised,
so the distance ranks classes by cosine similarity. The sums and counts are the head's whole state:
a batch adds ``onehot(y)^T phi`` and ``onehot(y)^T 1`` (one matrix product, no per-sample loop),
so running means are exact whatever the batch sizes, and a state resumes bit for bit.
"""

from __future__ import annotations

import numpy as _np
from array_api_compat import array_namespace as _compat_namespace
from array_api_compat import device

# numpy 2.1+ implements the 2023.12 standard itself; skipping array-api-compat's wrapping of it
# saves a few microseconds a call, which is most of a batch-1 update on a device
_NATIVE = _np if getattr(_np, "__array_api_version__", "0") >= "2023.12" else None


def array_namespace(*arrays):
    """The array library of ``arrays`` (``array_api_compat.array_namespace``), numpy itself for
    numpy arrays where numpy implements the standard."""
    if _NATIVE is not None and all(type(a) is _np.ndarray for a in arrays):
        return _NATIVE
    return _compat_namespace(*arrays)


def normalize_rows(x, eps: float = 1e-12):
    """Each row divided by its L2 norm (rows of zeros stay zero)."""
    xp = array_namespace(x)
    norm = xp.sqrt(xp.sum(x * x, axis=1, keepdims=True))
    return x / xp.maximum(norm, xp.asarray(eps, dtype=x.dtype, device=device(x)))


def one_hot(y, n_classes: int, dtype):
    xp = array_namespace(y)
    classes = xp.arange(n_classes, device=device(y))
    return xp.astype(xp.reshape(y, (-1, 1)) == xp.reshape(classes, (1, -1)), dtype)


def ncm_update(sums, counts, feats, y, cosine: bool = False):
    """New ``(sums, counts)`` after a batch of features ``(N, D)`` with labels ``(N,)``."""
    xp = array_namespace(sums, feats)
    feats = xp.astype(feats, sums.dtype, copy=False)
    if cosine:
        feats = normalize_rows(feats)
    onehot = one_hot(y, sums.shape[0], sums.dtype)
    return sums + xp.matmul(xp.matrix_transpose(onehot), feats), counts + xp.sum(onehot, axis=0)


def ncm_means(sums, counts, cosine: bool = False):
    """Class means ``(C, D)`` and which classes have any sample ``(C,)``."""
    xp = array_namespace(sums, counts)
    known = counts > 0
    means = sums / xp.reshape(xp.maximum(counts, xp.ones_like(counts)), (-1, 1))
    return (normalize_rows(means) if cosine else means), known


def ncm_scores(feats, means, known, cosine: bool = False):
    """``-|| phi(x) - mu_c ||`` for every row and class, ``-inf`` for classes never seen."""
    xp = array_namespace(feats, means)
    feats = xp.astype(feats, means.dtype, copy=False)
    if cosine:
        feats = normalize_rows(feats)
    sq = (xp.sum(feats * feats, axis=1, keepdims=True) - 2 * xp.matmul(feats, xp.matrix_transpose(means))
          + xp.reshape(xp.sum(means * means, axis=1), (1, -1)))
    dist = xp.sqrt(xp.maximum(sq, xp.zeros_like(sq)))
    return xp.where(xp.reshape(known, (1, -1)), -dist, xp.asarray(-xp.inf, dtype=dist.dtype,
                                                                 device=device(dist)))

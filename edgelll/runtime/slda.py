"""Streaming linear discriminant analysis (Hayes & Kanan 2020, "Lifelong Machine Learning with
Deep Streaming Linear Discriminant Analysis", CVPR-W, arXiv:1909.01520): class means and one
covariance shared by every class, both updated sample by sample, so that the metric learns from
new classes as well as the means do. Written once against the array API (numpy on a device,
torch in training), as :mod:`edgelll.runtime.rules` is.

The state is the NCM head's per-class sums ``s_c`` and counts ``n_c`` plus ``S``, the pooled
within-class scatter ``sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T``, kept centred (a raw Gram
matrix minus the means' outer products cancels badly in float32). A batch adds, for every class
c in it with ``b_c`` samples, batch mean ``m_c`` and centred batch scatter ``B_c``, the pairwise
update of Chan, Golub & LeVeque (1979, "Updating formulae and a pairwise algorithm for computing
sample variances"):

    S <- S + sum_c [ B_c + (n_c b_c / (n_c + b_c)) (m_c - mu_c)(m_c - mu_c)^T ],

exact whatever the batch sizes and order (up to rounding). Prediction is the nearest class mean
in the shrunk Mahalanobis metric of ``S``: with ``S = V diag(l) V^T`` and ``m = trace(S) / D``,

    P = V diag( sqrt((1 + s) m / (l + s m)) ) V^T,     y*(x) = argmin_c || (x - mu_c) P ||,

the map of :mod:`edgelll.runtime.whiten` (there fitted once on the base session, here refitted
from the running scatter whenever the head has learned), so ``s = 0`` is Fisher's linear
discriminant with equal priors (the paper's ``W = Lambda mu``, ``b = -mu Lambda mu / 2`` ranks
classes the same way) and a large ``s`` is plain NCM. ``P`` does not depend on the scale of ``S``,
so the scatter needs no division by the sample count. A scatter seeded from data whose classes
the head does not keep (a backbone's own training classes, say) carries that data's spread as a
prior: new classes then refine it rather than start from nothing.
"""

from __future__ import annotations

from array_api_compat import device

from .rules import array_namespace, ncm_means, ncm_scores, one_hot


def slda_update(sums, counts, scatter, feats, y):
    """New ``(sums, counts, scatter)`` after a batch of features ``(N, D)`` with class rows
    ``(N,)`` (the pairwise update of the module docstring; no per-sample loop)."""
    xp = array_namespace(sums, feats)
    x = xp.astype(feats, sums.dtype, copy=False)
    onehot = one_hot(y, sums.shape[0], sums.dtype)  # (N, C)
    b = xp.sum(onehot, axis=0)  # (C,)
    bsum = xp.matmul(xp.matrix_transpose(onehot), x)  # (C, D)
    ones = xp.ones_like(b)
    bmean = bsum / xp.reshape(xp.maximum(b, ones), (-1, 1))
    centred = x - xp.matmul(onehot, bmean)
    within = xp.matmul(xp.matrix_transpose(centred), centred)
    # the between term over the batch's classes alone: O(k D^2) for k classes in the batch, not
    # O(C D^2) for every class of the head (a new class among 600 would pay for all of them)
    present = b > 0
    n, bp = counts[present], b[present]
    diff = bmean[present] - sums[present] / xp.reshape(xp.maximum(n, xp.ones_like(n)), (-1, 1))
    weight = n * bp / xp.maximum(n + bp, xp.ones_like(n))  # 0 for a class new to the head
    between = xp.matmul(xp.matrix_transpose(diff), diff * xp.reshape(weight, (-1, 1)))
    return sums + bsum, counts + b, scatter + within + between


def within_scatter(feats, y, n_classes: int):
    """The pooled within-class scatter ``(D, D)`` of labelled features (class ids ``0..C-1``):
    :func:`slda_update` from an empty state, for seeding a head's scatter with data whose
    classes it does not keep."""
    xp = array_namespace(feats)
    d = feats.shape[1]
    zeros = xp.zeros((n_classes, d), dtype=feats.dtype, device=device(feats))
    empty = xp.zeros((d, d), dtype=feats.dtype, device=device(feats))
    return slda_update(zeros, xp.zeros((n_classes,), dtype=feats.dtype, device=device(feats)),
                       empty, feats, y)[2]


def slda_metric(scatter, shrink: float):
    """``P`` of the module docstring ``(D, D)``, computed in float64 and returned in the
    scatter's dtype; the identity while the scatter is still empty."""
    xp = array_namespace(scatter)
    d = scatter.shape[0]
    s64 = xp.astype(scatter, xp.float64)
    s64 = (s64 + xp.matrix_transpose(s64)) / 2
    m = float(xp.sum(xp.linalg.diagonal(s64))) / max(d, 1)
    if not m > 0:
        return xp.eye(d, dtype=scatter.dtype, device=device(scatter))
    lam, vec = xp.linalg.eigh(s64)
    floor = xp.asarray(1e-6 * m, dtype=xp.float64, device=device(scatter))
    w = xp.sqrt((1.0 + shrink) * m / xp.maximum(xp.maximum(lam, xp.zeros_like(lam)) + shrink * m,
                                               floor))
    proj = xp.matmul(vec * xp.reshape(w, (1, -1)), xp.matrix_transpose(vec))
    proj = (proj + xp.matrix_transpose(proj)) / 2
    return xp.astype(proj, scatter.dtype)


def slda_prepare(sums, counts, scatter, shrink: float):
    """``(P, centre, projected means, known)``: what scoring needs, recomputed only when the
    head has learned since. Features and means are centred on the mean of the class means
    before the map, which changes no distance but keeps float32 from cancelling in
    ``||z||^2 - 2 z.mu + ||mu||^2`` when the features sit far from the origin."""
    xp = array_namespace(sums, scatter)
    proj = slda_metric(scatter, shrink)
    means, known = ncm_means(sums, counts)
    k = xp.astype(known, means.dtype)
    centre = xp.sum(means * xp.reshape(k, (-1, 1)), axis=0) / xp.maximum(xp.sum(k), xp.ones_like(
        xp.sum(k)))
    return proj, centre, xp.matmul(means - centre, proj), known


def slda_scores(feats, proj, centre, means_proj, known):
    """``-|| (x - mu_c) P ||`` for every row and class, ``-inf`` for classes never seen."""
    xp = array_namespace(feats, proj)
    z = xp.matmul(xp.astype(feats, proj.dtype, copy=False) - centre, proj)
    return ncm_scores(z, means_proj, known)

"""Hebbian associative heads, written once against the array API (numpy on a device, torch in
training), as :mod:`edgelll.runtime.rules` is.

The associative (Hebb 1949; the correlation matrix memory of Kohonen 1972, "Correlation matrix
memories", IEEE Trans. Computers C-21) rule between feature i and class unit j over the p samples
seen, features L2-normalised and targets one-hot:

    w_ij = (1/p) sum_k x_i^k y_j^k.

It is kept as a running mean, ``W' = (p W + Y^T X) / (p + N)`` for a batch (X, Y) of N samples, so
a new class only appends a row, and the per-class counts n_j = sum_k y_j^k are kept beside it.
Prediction is the largest response ``W x``; since w_j = (n_j / p) mean_j, classes seen more often
answer louder, so ``balanced`` (the default of the heads) divides each response by n_j / p, i.e.
responds with ``mean_j . x``.

Oja's rule (Oja 1982, "Simplified neuron model as a principal component analyzer", J. Math.
Biol. 15, eq. 3) as the bounded option: each class unit's response to its own class's inputs,
r = w_j . x, drives

    w_j <- w_j + lr * sum_k y_j^k r_k (x^k - r_k w_j),

whose fixed point has ||w_j|| = 1 (the class's principal direction), so weights stay bounded
whatever the stream's length. A new class's row starts at the normalised mean of its shots (Oja's
rule cannot leave w = 0).
"""

from __future__ import annotations


from .rules import array_namespace, normalize_rows, one_hot


def hebbian_update(weight, counts, feats, y):
    """New ``(weight, counts)``: ``weight`` ``(C, D)`` the running mean ``(1/p) Y^T X`` over every
    sample so far, ``counts`` ``(C,)`` the samples of each class (p is their sum)."""
    xp = array_namespace(weight, feats)
    x = normalize_rows(xp.astype(feats, weight.dtype, copy=False))
    onehot = one_hot(y, weight.shape[0], weight.dtype)
    p = xp.sum(counts)
    total = p + x.shape[0]
    weight = (p * weight + xp.matmul(xp.matrix_transpose(onehot), x)) / total
    return weight, counts + xp.sum(onehot, axis=0)


def hebbian_scores(feats, weight, counts, balanced: bool = True):
    """Responses ``W x`` ``(N, C)`` of normalised features; ``balanced``: each divided by its
    class's share n_j / p (the class mean's response); classes never seen score -inf."""
    xp = array_namespace(feats, weight)
    x = normalize_rows(xp.astype(feats, weight.dtype, copy=False))
    scores = xp.matmul(x, xp.matrix_transpose(weight))
    if balanced:
        share = counts / xp.maximum(xp.sum(counts), xp.ones_like(xp.sum(counts)))
        scores = scores / xp.reshape(xp.maximum(share, xp.full_like(share, 1e-30)), (1, -1))
    neg = xp.full_like(scores, -xp.inf)
    return xp.where(xp.reshape(counts > 0, (1, -1)), scores, neg)


def oja_update(weight, counts, feats, y, lr: float = 0.01):
    """New ``(weight, counts)`` after Oja's rule on a batch (the class unit of each sample
    learns from it; the batch's terms are summed, so ``lr`` times the batch size should stay
    well under 1)."""
    xp = array_namespace(weight, feats)
    x = normalize_rows(xp.astype(feats, weight.dtype, copy=False))
    onehot = one_hot(y, weight.shape[0], weight.dtype)
    r = xp.matmul(x, xp.matrix_transpose(weight)) * onehot  # (N, C), own class only
    delta = xp.matmul(xp.matrix_transpose(r), x) - xp.reshape(xp.sum(r * r, axis=0), (-1, 1)) * weight
    return weight + lr * delta, counts + xp.sum(onehot, axis=0)


def oja_init(feats, like):
    """A new class's row for Oja's rule: the normalised mean of its normalised shots ``(D,)``."""
    xp = array_namespace(feats, like)
    x = normalize_rows(xp.astype(feats, like.dtype, copy=False))
    return normalize_rows(xp.mean(x, axis=0, keepdims=True))[0, ...]

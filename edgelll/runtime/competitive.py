"""Competitive learning over prototypes, written once against the array API (numpy on a device,
torch in training), as :mod:`edgelll.runtime.rules` is.

Competitive Hebbian learning (Rumelhart & Zipser 1985, "Feature discovery by competitive
learning", Cognitive Science 9; Kohonen's LVQ1, Kohonen 1990, "The self-organizing map", Proc.
IEEE 78(9), eq. 23): for each input x exactly one unit, the winner w, moves toward it,

    w* = argmin_i || x - p_i ||   (``by="distance"``)  or  argmax_i p_i . x   (``by="response"``),
    p_w <- p_w + eta_n (x - p_w),      eta_n = lr / (1 + decay * n_w),

n_w the unit's wins so far (decay 0: a constant rate; lr 1 and decay 1: the running mean of the
inputs it won). Unsupervised, every unit competes (clustering into k groups). Supervised,
prototypes carry labels and only the true class's units compete; with ``lvq`` the best unit of
another class, when it beats them (x is misclassified), moves away, p_r <- p_r - eta (x - p_r)
(LVQ1's update of a wrongly labelled winner).

Batches. The rule is sequential per sample; a batch takes its winners against the prototypes as
the batch found them (the mini-batch rule of Sculley 2010, "Web-scale k-means clustering", WWW)
and then applies the moves exactly as the sequential rule would for those winners, in closed
form: with signed steps e_k of unit i at samples k (0 where i does not move) and a_k = 1 - e_k,

    p_i' = (prod_k a_k) p_i + sum_k e_k (prod_{j>k} a_j) x_k        (:func:`apply_moves`),

reverse cumulative sums of log a_k over the batch, so no per-sample Python. At batch 1 it is the
online rule exactly. Units that do not move are left bit for bit.
"""

from __future__ import annotations

from array_api_compat import device

from .rules import array_namespace, one_hot

_TINY = 1e-30  # log(1 - 1) would be -inf; exp(log(1e-30)) is 0 in float32 arithmetic


def sq_distances(feats, protos):
    """``|| x_n - p_m ||^2`` ``(N, M)``, clipped at 0."""
    xp = array_namespace(feats, protos)
    # (||x||^2 - 2 x.p) + ||p||^2, summed in place on the product (the norms by vecdot: no
    # (N, D) temporary); the batch-1 paths of the numpy heads add in the same order, bit for bit
    sq = xp.matmul(feats, xp.matrix_transpose(protos))
    sq *= -2
    sq += xp.reshape(xp.vecdot(feats, feats), (-1, 1))
    sq += xp.reshape(xp.vecdot(protos, protos), (1, -1))
    return xp.maximum(sq, xp.zeros_like(sq))


def apply_moves(protos, steps, feats):
    """Every unit's sequential moves of a batch at once: ``steps`` ``(N, M)`` holds the signed
    step of unit m at sample n (``+eta``: toward x_n, ``-eta``: away, 0: no move)."""
    xp = array_namespace(protos, steps, feats)
    if steps.shape[0] == 1:  # one input: the online rule as written, p + e (x - p)
        return protos + xp.reshape(steps[0, ...], (-1, 1)) * (feats - protos)
    dt = protos.dtype
    tiny = xp.asarray(_TINY, dtype=dt, device=device(protos))
    log_a = xp.log(xp.maximum(1 - steps, tiny))
    # sums over the later samples j > k: a cumulative sum from the last sample up, with the
    # empty sum first (no subtraction, so a factor of exactly 0 does not cancel against itself);
    # row N of it is the sum over every sample
    rev = xp.cumulative_sum(xp.flip(log_a, axis=0), axis=0, include_initial=True)
    n = steps.shape[0]
    coef = steps * xp.exp(xp.flip(rev[:n, ...], axis=0))
    keep = xp.exp(rev[n, ...])
    moved = xp.reshape(keep, (-1, 1)) * protos + xp.matmul(xp.matrix_transpose(coef), feats)
    still = xp.reshape(xp.all(steps == 0, axis=0), (-1, 1))
    return xp.where(still, protos, moved)


def match_scores(protos, feats, by: str = "distance"):
    """How well every unit matches every row ``(N, M)``, larger is better: ``-|| x - p ||^2``
    (``by="distance"``) or the response ``p . x`` (``by="response"``)."""
    xp = array_namespace(protos, feats)
    if by == "distance":
        return -sq_distances(feats, protos)
    if by == "response":
        return xp.matmul(feats, xp.matrix_transpose(protos))
    raise ValueError(f"unknown competition {by!r}; expected 'distance' or 'response'")


def winners(protos, feats, allowed=None, by: str = "distance", score=None):
    """Index of the winning unit of every row ``(N,)``; ``allowed`` ``(N, M)`` bool restricts the
    competition (a supervised sample's own class)."""
    xp = array_namespace(protos, feats)
    score = match_scores(protos, feats, by) if score is None else score
    if allowed is not None:
        score = xp.where(allowed, score, xp.asarray(-xp.inf, dtype=score.dtype, device=device(score)))
    return xp.argmax(score, axis=1)


def competitive_update(protos, wins, feats, y=None, owner=None, lr: float = 0.1,
                       decay: float = 0.0, by: str = "distance", lvq: bool = False):
    """New ``(protos, wins)`` after a batch. ``protos`` ``(M, D)``, ``wins`` ``(M,)`` float counts;
    ``y`` ``(N,)`` class rows and ``owner`` ``(M,)`` each unit's class row (supervised), or both
    None (unsupervised: every unit competes). With ``lvq``, the best unit of another class moves
    away when it beats the own class's winner (the input is misclassified: LVQ1's case of a
    wrongly labelled winner; pushing it away on every input diverges)."""
    xp = array_namespace(protos, feats)
    feats = xp.astype(feats, protos.dtype, copy=False)
    m = protos.shape[0]
    score = match_scores(protos, feats, by)
    allowed = None
    if y is not None:
        allowed = xp.reshape(y, (-1, 1)) == xp.reshape(owner, (1, -1))
    win = winners(protos, feats, allowed, by, score)
    won = one_hot(win, m, protos.dtype)  # (N, M)
    before = xp.cumulative_sum(won, axis=0) - won  # the unit's earlier wins in this batch
    eta = lr / (1 + decay * (xp.reshape(wins, (1, -1)) + before))
    steps = eta * won
    if lvq and y is not None:
        rival = winners(protos, feats, ~allowed, by, score)
        best = xp.max(xp.where(allowed, score, xp.full_like(score, -xp.inf)), axis=1)
        worse = xp.max(xp.where(~allowed, score, xp.full_like(score, -xp.inf)), axis=1)
        wrong = xp.reshape(xp.astype(worse > best, protos.dtype), (-1, 1))
        steps = steps - eta * one_hot(rival, m, protos.dtype) * wrong
    return apply_moves(protos, steps, feats), wins + xp.sum(won, axis=0)


def farthest_points(feats, k: int):
    """``k`` rows of ``feats`` by farthest-point traversal from the first (Gonzalez 1985): a
    deterministic start that puts one unit in every well-separated group. Fewer rows than k
    repeat."""
    xp = array_namespace(feats)
    picked = [0]
    d = sq_distances(feats, feats[:1, ...])[:, 0]
    for _ in range(1, k):  # k small (units per class); each step is one batch operation
        nxt = int(xp.argmax(d))
        picked.append(nxt)
        d = xp.minimum(d, sq_distances(feats, feats[nxt:nxt + 1, ...])[:, 0])
    return xp.take(feats, xp.asarray(picked, device=device(feats)), axis=0)


def shot_prototypes(feats, k: int):
    """``k`` prototypes from a class's few shots: farthest points, then one running-mean pass of
    competitive learning over the shots (each prototype the mean of the shots it wins)."""
    xp = array_namespace(feats)
    protos = farthest_points(feats, k)
    zeros = xp.zeros((k,), dtype=feats.dtype, device=device(feats))
    return competitive_update(protos, zeros, feats, lr=1.0, decay=1.0)[0]


def cluster(feats, k: int, epochs: int = 3, batch: int = 256, lr: float = 1.0,
            decay: float = 1.0, by: str = "distance"):
    """Unsupervised competitive learning: ``(prototypes (k, D), assignment (N,))`` of ``feats``
    clustered into ``k`` groups, from farthest-point prototypes, ``epochs`` passes of
    :func:`competitive_update` in batches (lr 1, decay 1: each unit the running mean of what it
    won, online k-means). Any array library (numpy, torch)."""
    xp = array_namespace(feats)
    if not 1 <= k <= feats.shape[0]:
        raise ValueError(f"cannot cluster {feats.shape[0]} rows into {k} groups")
    protos = farthest_points(feats, k)
    wins = xp.zeros((k,), dtype=protos.dtype, device=device(feats))
    for _ in range(epochs):
        for start in range(0, feats.shape[0], batch):
            protos, wins = competitive_update(protos, wins, feats[start:start + batch, ...],
                                              lr=lr, decay=decay, by=by)
    return protos, winners(protos, feats, by=by)


def class_scores(feats, protos, per_class: int, alive=None):
    """``-min || x - p ||`` over each class's units ``(N, C)``: units are laid out class-major,
    ``per_class`` slots per class; slots not ``alive`` (and classes with none) score -inf."""
    xp = array_namespace(feats, protos)
    dist = xp.sqrt(sq_distances(xp.astype(feats, protos.dtype, copy=False), protos))
    if alive is not None:
        dist = xp.where(xp.reshape(alive, (1, -1)), dist,
                        xp.asarray(xp.inf, dtype=dist.dtype, device=device(dist)))
    n = dist.shape[0]
    return -xp.min(xp.reshape(dist, (n, -1, per_class)), axis=2)


def unit_owner(n_classes: int, per_class: int, like):
    """Each slot's class row for the class-major layout, on ``like``'s device."""
    xp = array_namespace(like)
    return xp.reshape(xp.broadcast_to(xp.reshape(xp.arange(n_classes, device=device(like)),
                                                 (-1, 1)), (n_classes, per_class)), (-1,))

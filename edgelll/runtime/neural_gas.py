"""Neural gas with competitive Hebbian edges, written once against the array API (numpy on a
device, torch in training), and its few-shot class-incremental use as in TOPIC.

Neural gas (Martinetz & Schulten 1991, "A 'neural-gas' network learns topologies", ICANN;
Martinetz, Berkovich & Schulten 1993, "'Neural-gas' network for vector quantization and its
application to time-series prediction", IEEE TNN 4(4), eq. 3.3): every node moves toward the
input with a step that decays with its distance rank k_i (0 for the closest),

    w_i <- w_i + eps * h(k_i) (x - w_i),      h(k) = exp(-k / lambda).

Competitive Hebbian learning (Martinetz & Schulten 1994, "Topology representing networks",
Neural Networks 7(3), steps (iv)-(vi)): the edge between the two closest nodes is set (age 0),
every other edge of the closest node ages by one, and edges older than ``max_age`` are removed.

FSCIL as in TOPIC (Tao et al. 2020, "Few-shot class-incremental learning", arXiv:2004.10956,
section 3): nodes carry labels (supervised: only the input's own class's nodes rank and move), a
new class gets new nodes initialised from its few shots, and old nodes are stabilised: a node's
step shrinks with its age a_i (the inputs it has won), ``eps_i = eps h(k_i) / (1 + a_i / tau)``, so
the topology of old classes is kept while new nodes still move freely. Nodes sit in per-class
slots (class-major, ``alive`` marks used ones); the number of nodes is capped by the head.

Batches: ranks, ages and winners are taken as the batch found them and the moves applied in
closed form as the sequential rule would (:func:`edgelll.runtime.competitive.apply_moves`), and
so are the edges (:func:`update_edges`: an edge's age is counted from the last step that set it).
"""

from __future__ import annotations

from array_api_compat import device

from .competitive import _TINY, apply_moves, farthest_points
from .rules import array_namespace, one_hot


def rank_steps(dist, ages, eps: float, lam: float, tau: float, allowed=None):
    """Step ``(N, M)`` of every node for every input: ``eps exp(-rank / lam) / (1 + age / tau)``,
    ranks by distance among the ``allowed`` nodes (others take no step)."""
    xp = array_namespace(dist)
    inf = xp.asarray(xp.inf, dtype=dist.dtype, device=device(dist))
    if allowed is not None:
        dist = xp.where(allowed, dist, inf)
    ranks = xp.astype(xp.argsort(xp.argsort(dist, axis=1, stable=True), axis=1, stable=True),
                      dist.dtype)
    steps = eps * xp.exp(-ranks / lam) / (1 + xp.reshape(ages, (1, -1)) / tau)
    return steps if allowed is None else xp.where(allowed, steps, xp.zeros_like(steps))


def order_scores(feats, nodes):
    """``||n||^2 - 2 x.n`` ``(N, M)``: the squared distances less ``||x||^2``, a constant of each
    row, so they order every row's nodes as the distances do; ranks and winners need nothing
    else (one product, no ``(N, D)`` pass)."""
    xp = array_namespace(feats, nodes)
    s = xp.matmul(feats, xp.matrix_transpose(nodes))
    s *= -2
    s += xp.reshape(xp.vecdot(nodes, nodes), (1, -1))
    return s


def two_closest(dist, inplace: bool = False):
    """The closest and second-closest node of every row, ``(N,)`` each (``inplace``: ``dist``
    is overwritten, inf at the closest)."""
    xp = array_namespace(dist)
    first = xp.argmin(dist, axis=1)  # the first minimum of each row, as a stable sort has it
    rest = dist if inplace else xp.asarray(dist, copy=True)
    rest[xp.arange(dist.shape[0], device=device(dist)), first] = xp.inf
    return first, xp.argmin(rest, axis=1)


def update_edges(edge_age, first, second, max_age: float, inplace: bool = False):
    """Competitive Hebbian edges after a batch of winner pairs, as the sequential rule leaves
    them. ``edge_age`` ``(M, M)`` symmetric, -1 where there is no edge; a new array unless
    ``inplace``. Per pair (i, j), i != j, in batch order: every edge of i ages by one, edges older
    than ``max_age`` go, and edge (i, j) is set to 0.

    In closed form, with no per-pair Python: an edge {a, b} ages once for every later win of a or
    b, and ageing only grows, so it is gone exactly when its final age exceeds ``max_age``. An
    edge the batch does not set ends at ``age + c_a + c_b`` (c the batch's wins; -1 stays -1);
    an edge the batch sets ends at the wins of a and b after the last step that set it. Only the
    rows and columns of the batch's winners change: O(|winners| M) work."""
    xp = array_namespace(edge_age)
    out = edge_age if inplace else xp.asarray(edge_age, copy=True)
    keep = first != second
    f, s = first[keep], second[keep]
    n, m = int(f.shape[0]), int(edge_age.shape[0])
    if n == 0:
        return out
    dt, dev = edge_age.dtype, device(edge_age)
    none = xp.asarray(-1, dtype=dt, device=dev)
    if n == 1:  # one pair: the rule as written, on the winner's row and column
        i, j = int(f[0]), int(s[0])
        row = out[i, :]
        row = xp.where(row >= 0, row + 1, row)
        row = xp.where(row > max_age, none, row)
        row[j] = 0
        out[i, :] = row
        out[:, i] = row
        return out
    f, s = xp.astype(f, xp.int64), xp.astype(s, xp.int64)
    t = xp.arange(n, dtype=xp.int64, device=dev)
    won = xp.sort(f * n + t)  # (winner, step) keys, sorted
    starts, counts = _runs(xp, won // n)
    winners = xp.take(won, starts) // n
    wins = xp.zeros((m,), dtype=dt, device=dev)
    wins[winners] = xp.astype(counts, dt)
    rows = xp.take(out, winners, axis=0)  # (U, M): every changed edge has an end among them
    aged = rows + xp.reshape(xp.take(wins, winners), (-1, 1)) + xp.reshape(wins, (1, -1))
    aged = xp.where((rows >= 0) & (aged <= max_age), aged, xp.full_like(aged, -1))
    # the last step that set each distinct edge {a, b}
    a, b = xp.minimum(f, s), xp.maximum(f, s)
    key = a * m + b
    order = xp.argsort(key, stable=True)  # equal keys keep batch order: the last is the latest
    ks = xp.take(key, order)
    last = xp.concat([ks[1:] != ks[:-1], xp.ones((1,), dtype=xp.bool, device=dev)])
    step = order[last]
    a, b = xp.take(a, step), xp.take(b, step)
    # wins of node i after step t: its wins minus those at steps <= t, counted by searching the
    # sorted (winner, step) keys

    def after(i):
        upto = (xp.searchsorted(won, i * n + step, side="right")
                - xp.searchsorted(won, i * n, side="left"))
        return xp.take(wins, i) - xp.astype(upto, dt)

    fresh = after(a) + after(b)
    fresh = xp.where(fresh <= max_age, fresh, xp.full_like(fresh, -1))
    out[winners, :] = aged
    out[:, winners] = xp.matrix_transpose(aged)
    out[a, b] = fresh
    out[b, a] = fresh
    return out


def fill_slots(nodes, alive, feats, y, per_class: int, max_nodes: int = 0):
    """New ``(nodes, alive)`` where each class of ``y`` with free slots takes as many of its
    inputs as new nodes (the farthest points among them when they are more), within
    ``max_nodes`` living nodes (0: no cap). How a new class's few shots become its nodes
    (TOPIC), and how a base session's nodes appear. A Python step per class that still has free
    slots; none once every class is full."""
    xp = array_namespace(nodes, feats)
    if bool(xp.all(alive)):
        return nodes, alive
    feats = xp.astype(feats, nodes.dtype, copy=False)
    free = xp.reshape(~alive, (-1, per_class))
    need = xp.any(xp.take(free, y, axis=0), axis=1)  # inputs whose class has a free slot
    if not bool(xp.any(need)):
        return nodes, alive
    nodes, alive = xp.asarray(nodes, copy=True), xp.asarray(alive, copy=True)
    for c in xp.unique_values(y[need]).tolist():
        room = int(xp.sum(xp.astype(alive, xp.int64)))
        room = (max_nodes - room) if max_nodes else per_class
        slots = xp.nonzero(free[c, ...])[0] + c * per_class
        xc = xp.take(feats, xp.nonzero(y == c)[0], axis=0)
        n = min(int(slots.shape[0]), int(xc.shape[0]), room)
        if n < 1:
            continue
        nodes[slots[:n]] = xc if n == xc.shape[0] else farthest_points(xc, n)
        alive[slots[:n]] = True
    return nodes, alive


def ng_update(nodes, ages, edge_age, feats, y=None, owner=None, alive=None, eps: float = 0.1,
              lam: float = 1.0, tau: float = 100.0, max_age: float = 50.0,
              inplace_edges: bool = False, per_class: int = 0):
    """New ``(nodes, ages, edge_age)`` after a batch. ``nodes`` ``(M, D)``, ``ages`` ``(M,)``
    the inputs each node has won, ``edge_age`` ``(M, M)`` (changed in place with
    ``inplace_edges``: no copy of M^2 ages a batch); supervised with ``y`` (class rows) and
    ``owner`` (each node's class row), or with ``per_class`` instead of ``owner`` for the
    class-major slots of the heads (class r owns slots r k .. r k + k - 1: ranks and moves are
    then taken on each input's k slots alone; the same ages and edges bit for bit, the same
    nodes up to rounding); ``alive`` ``(M,)`` marks used slots."""
    xp = array_namespace(nodes, feats)
    feats = xp.astype(feats, nodes.dtype, copy=False)
    dist = order_scores(feats, nodes)
    n, m = dist.shape
    if per_class and y is not None and owner is None:
        return _block_update(xp, nodes, ages, edge_age, feats, dist, y, alive, per_class, eps,
                             lam, tau, max_age, inplace_edges)
    allowed = None
    if alive is not None:
        allowed = xp.broadcast_to(xp.reshape(alive, (1, -1)), (n, m))
    if y is not None:
        own = xp.reshape(y, (-1, 1)) == xp.reshape(owner, (1, -1))
        allowed = own if allowed is None else (allowed & own)
    steps = rank_steps(dist, ages, eps, lam, tau, allowed)
    inf = xp.asarray(xp.inf, dtype=dist.dtype, device=device(dist))
    mover = xp.argmin(dist if allowed is None else xp.where(allowed, dist, inf), axis=1)
    hits = one_hot(mover, m, nodes.dtype)
    if allowed is not None:  # an input with no node it may move wins none (not node 0)
        hits = hits * xp.astype(xp.any(allowed, axis=1, keepdims=True), nodes.dtype)
    won = xp.sum(hits, axis=0)
    first, second = _linked(xp, dist, alive, alive is None or bool(xp.all(alive)))
    edge_age = update_edges(edge_age, first, second, max_age, inplace_edges)
    return apply_moves(nodes, steps, feats), ages + won, edge_age


def _linked(xp, dist, alive, all_alive: bool):
    """The winner pairs of the edges: the two closest living nodes of any class, the topology of
    the whole gas (``dist`` is overwritten)."""
    live = dist if all_alive else xp.where(xp.reshape(alive, (1, -1)), dist, xp.asarray(
        xp.inf, dtype=dist.dtype, device=device(dist)))
    first, second = two_closest(live, inplace=True)
    if not all_alive and int(xp.sum(xp.astype(alive, xp.int64))) < 2:
        second = first  # a single living node has no edge to make
    return first, second


def _runs(xp, values):
    """``(starts, counts)`` of the runs of equal values in the sorted 1-D ``values``: what
    unique_counts gives, without its overhead (about 28 us a call in numpy here)."""
    n, dev = int(values.shape[0]), device(values)
    new = xp.concat([xp.ones((1,), dtype=xp.bool, device=dev), values[1:] != values[:-1]])
    starts = xp.nonzero(new)[0]
    ends = xp.concat([starts[1:], xp.asarray([n], dtype=starts.dtype, device=dev)])
    return starts, ends - starts


def _block_update(xp, nodes, ages, edge_age, feats, dist, y, alive, k: int, eps, lam, tau,
                  max_age, inplace_edges):
    """:func:`ng_update` on class-major slots: every input ranks and moves its own class's k
    slots, gathered ``(N, k)``, instead of masking all M nodes. The ranks among the allowed
    nodes of a row are the ranks inside its block (the others are inf in both and sort last,
    ties by index in both), so the steps are bitwise the masked rule's; the moves are summed by
    class (:func:`_block_moves`), the same sums up to rounding."""
    n, m = dist.shape
    dev = device(dist)
    all_alive = alive is None or bool(xp.all(alive))
    slots = (xp.reshape(xp.astype(y, xp.int64) * k, (-1, 1))
             + xp.reshape(xp.arange(k, dtype=xp.int64, device=dev), (1, -1)))  # (N, k)
    rows = xp.reshape(xp.arange(n, dtype=xp.int64, device=dev) * m, (-1, 1))
    flat = xp.reshape(rows + slots, (-1,))  # each input's slots in the (N, M) layout
    d = xp.reshape(xp.take(xp.reshape(dist, (-1,)), flat), (n, k))
    live = None
    if not all_alive:
        live = xp.reshape(xp.take(alive, xp.reshape(slots, (-1,))), (n, k))
        d = xp.where(live, d, xp.asarray(xp.inf, dtype=d.dtype, device=dev))
    ranks = xp.argsort(xp.argsort(d, axis=1, stable=True), axis=1, stable=True)
    # eps exp(-r / lam) for r = 0..k-1, as rank_steps computes it elementwise
    h = eps * xp.exp(-xp.arange(k, dtype=dist.dtype, device=dev) / lam)
    age = xp.reshape(xp.take(ages, xp.reshape(slots, (-1,))), (n, k))
    steps = xp.reshape(xp.take(h, xp.reshape(ranks, (-1,))), (n, k)) / (1 + age / tau)
    hits = xp.astype(ranks == 0, nodes.dtype)  # the closest own node wins (rank 0: the first)
    if live is not None:
        steps = xp.where(live, steps, xp.zeros_like(steps))
        hits = hits * xp.astype(live, nodes.dtype)  # no living node of its class: no win
    first, second = _linked(xp, dist, alive, all_alive)
    edge_age = update_edges(edge_age, first, second, max_age, inplace_edges)
    # every own node of an input moves unless a slot is dead or eps is 0 (steps underflow to 0
    # only past ages of 1e38 tau)
    new_nodes, won = _block_moves(xp, nodes, steps, hits, y, flat, feats,
                                  live is None and eps > 0)
    return new_nodes, ages + won, edge_age


def _block_moves(xp, nodes, steps, hits, y, flat, feats, all_move: bool = False):
    """New nodes and the wins ``(M,)`` of a batch whose steps touch only each input's own
    class's k slots (``steps``, ``hits`` ``(N, k)``, slot ``y k + j``; ``flat`` ``(N k,)``
    the same cells in the dense ``(N, M)`` layout), by
    :func:`edgelll.runtime.competitive.apply_moves`' closed form: the inputs are grouped by
    class and padded to the largest group (G classes, L inputs), so the reverse sums run over
    (G, L, k) and the moves are G products (k, L) x (L, D), instead of one (M, N) x (N, D) with
    nine tenths zeros. Padding steps are 0, factors 1: the same terms as the dense rule's. While
    skewed groups would make the padding larger than the dense steps, the dense rule.
    ``all_move``: every step is nonzero (no node of a class in the batch keeps its bits)."""
    n, k = steps.shape
    m, dev, dt = nodes.shape[0], device(nodes), nodes.dtype
    y = xp.astype(y, xp.int64)
    order = xp.argsort(y, stable=True)  # inputs by class, in batch order inside each
    ys = xp.take(y, order)
    starts, counts = _runs(xp, ys)
    g, size = int(starts.shape[0]), int(xp.max(counts))
    if n == 1 or 2 * g * size * k > n * m:  # one input (the online rule as written), or
        # skewed groups: the dense rule is as cheap
        dense = xp.zeros((n * m,), dtype=dt, device=dev)
        dense[flat] = xp.reshape(steps, (-1,))
        won = xp.zeros((n * m,), dtype=dt, device=dev)
        won[flat] = xp.reshape(hits, (-1,))
        won = xp.sum(xp.reshape(won, (n, m)), axis=0)
        return apply_moves(nodes, xp.reshape(dense, (n, m)), feats), won
    group = xp.cumulative_sum(xp.astype(
        xp.concat([xp.zeros((1,), dtype=xp.bool, device=dev), ys[1:] != ys[:-1]]), xp.int64))
    cell = group * size + (xp.arange(n, dtype=xp.int64, device=dev) - xp.take(starts, group))
    padded = xp.zeros((g * size, 2 * k), dtype=dt, device=dev)
    padded[cell, ...] = xp.take(xp.concat([steps, hits], axis=1), order, axis=0)
    padded = xp.reshape(padded, (g, size, 2 * k))
    src = xp.zeros((g * size,), dtype=xp.int64, device=dev)  # padding: any input, step 0
    src[cell] = order
    x = xp.reshape(xp.take(feats, src, axis=0), (g, size, feats.shape[1]))
    step = padded[..., :k]
    tiny = xp.asarray(_TINY, dtype=dt, device=dev)
    log_a = xp.log(xp.maximum(1 - step, tiny))
    # sums over each group's later inputs, and over all of them: a product with a (L+1, L)
    # 0/1 matrix ([t, j] = 1 where j > t; row L all ones), exact zeros for the others
    cols = xp.reshape(xp.arange(size, device=dev), (1, -1))
    later = xp.astype(cols > xp.reshape(xp.arange(-1, size, device=dev), (-1, 1)), dt)
    later = xp.concat([later[1:, ...], later[:1, ...]], axis=0)
    rev = xp.matmul(later, log_a)  # (G, L + 1, k)
    coef = step * xp.exp(rev[:, :size, ...])
    keep = xp.exp(rev[:, size, ...])  # (G, k)
    own = xp.reshape(xp.reshape(xp.take(ys, starts) * k, (-1, 1)) + xp.reshape(
        xp.arange(k, dtype=xp.int64, device=dev), (1, -1)), (-1,))  # the G classes' slots
    old = xp.reshape(xp.take(nodes, own, axis=0), (g, k, -1))
    moved = xp.reshape(keep, (g, k, 1)) * old + xp.matmul(xp.matrix_transpose(coef), x)
    if not all_move:
        moved = xp.where(xp.reshape(xp.all(step == 0, axis=1), (g, k, 1)), old, moved)
    out = xp.asarray(nodes, copy=True)
    out[own, ...] = xp.reshape(moved, (g * k, -1))
    won = xp.zeros((m,), dtype=dt, device=dev)
    won[own] = xp.reshape(xp.sum(padded[..., k:], axis=1), (-1,))
    return out, won

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

from .competitive import apply_moves, farthest_points, sq_distances
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


def two_closest(dist):
    """The closest and second-closest node of every row, ``(N,)`` each."""
    xp = array_namespace(dist)
    first = xp.argmin(dist, axis=1)  # the first minimum of each row, as a stable sort has it
    cols = xp.reshape(xp.arange(dist.shape[1], device=device(dist)), (1, -1))
    inf = xp.asarray(xp.inf, dtype=dist.dtype, device=device(dist))
    second = xp.argmin(xp.where(cols == xp.reshape(first, (-1, 1)), inf, dist), axis=1)
    return first, second


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
    winners, counts = xp.unique_counts(f)
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
    t = xp.arange(n, dtype=xp.int64, device=dev)
    won = xp.sort(f * n + t)

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
              inplace_edges: bool = False):
    """New ``(nodes, ages, edge_age)`` after a batch. ``nodes`` ``(M, D)``, ``ages`` ``(M,)``
    the inputs each node has won, ``edge_age`` ``(M, M)`` (changed in place with
    ``inplace_edges``: no copy of M^2 ages a batch); supervised with ``y`` (class rows) and
    ``owner`` (each node's class row); ``alive`` ``(M,)`` marks used slots."""
    xp = array_namespace(nodes, feats)
    feats = xp.astype(feats, nodes.dtype, copy=False)
    dist = sq_distances(feats, nodes)
    n, m = dist.shape
    allowed = None
    if alive is not None:
        allowed = xp.broadcast_to(xp.reshape(alive, (1, -1)), (n, m))
    if y is not None:
        own = xp.reshape(y, (-1, 1)) == xp.reshape(owner, (1, -1))
        allowed = own if allowed is None else (allowed & own)
    steps = rank_steps(dist, ages, eps, lam, tau, allowed)
    inf = xp.asarray(xp.inf, dtype=dist.dtype, device=device(dist))
    # edges link the two closest living nodes of any class: the topology of the whole gas
    live = dist if alive is None else xp.where(xp.reshape(alive, (1, -1)), dist, inf)
    first, second = two_closest(live)
    if alive is not None and int(xp.sum(xp.astype(alive, xp.int64))) < 2:
        second = first  # a single living node has no edge to make
    mover = xp.argmin(dist if allowed is None else xp.where(allowed, dist, inf), axis=1)
    won = xp.sum(one_hot(mover, m, nodes.dtype), axis=0)
    edge_age = update_edges(edge_age, first, second, max_age, inplace_edges)
    return apply_moves(nodes, steps, feats), ages + won, edge_age

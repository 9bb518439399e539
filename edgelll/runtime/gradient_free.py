"""Gradient-free heads on the device (numpy), with :class:`edgelll.runtime.heads.Head`'s
interface (``scores``, ``learn``, ``add_class``, ``to_arrays``); the rules are the array-API ones
that training runs on torch tensors:

- :class:`HebbianHead` (``kind`` "hebbian"): the associative running mean of
  :mod:`.hebbian` (Oja's rule with ``oja``); a new class appends a row.
- :class:`CompetitiveHead` ("competitive"): ``per_class`` prototypes per class, supervised
  winner-take-all (LVQ1 with ``lvq``) of :mod:`.competitive`; a new class's prototypes are
  its shots' farthest points refined by one running-mean pass
  (:func:`edgelll.runtime.competitive.shot_prototypes`).
- :class:`NeuralGasHead` ("neural-gas"): per-class node slots of :mod:`.neural_gas` with
  age-stabilised steps and competitive Hebbian edges; a new class's nodes start from its shots
  (TOPIC, Tao et al. 2020, arXiv:2004.10956) within ``max_nodes``.
- :class:`SLDAHead` ("slda"): streaming LDA of :mod:`.slda`, class means and one shared
  within-class scatter that every sample updates; a new class appends its sums and counts and
  adds its shots' spread to the scatter.

Every head keeps one row per class (``labels``, ``tasks``) and scores classes; option values
travel in ``params``, the arrays in :data:`edgelll.runtime.format.HEAD_ARRAYS`.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .competitive import (class_scores, competitive_update, farthest_points, shot_prototypes,
                          unit_owner)
from .hebbian import hebbian_scores, hebbian_update, oja_init, oja_update
from .heads import Head
from .rules import normalize_rows
from .neural_gas import fill_slots, ng_update
from .slda import slda_prepare, slda_scores, slda_update, within_scatter


def _sq_dist(x: np.ndarray, units: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """``||x||^2 - 2 u.x + ||u||^2`` clipped at 0 for one sample ``x`` ``(D,)`` against every
    unit, given the units' squared norms ``sq``: bitwise sq_distances' row, in place."""
    d = units.dot(x)
    d *= -2.0
    d += np.vecdot(x, x)
    d += sq
    return np.maximum(d, 0.0, out=d)


def _grown(buf, cur: np.ndarray, size: int, fill: float, square: bool = False):
    """``(buf, view)``: ``cur`` extended to ``size`` rows (and columns, ``square``) of ``fill``,
    as the leading block of ``buf``. While ``cur`` is still that block and ``buf`` has room,
    nothing is copied; else a new buffer with an eighth more room is made, so that a head grown
    class by class copies its arrays O(log) times, not on every class (the edge ages of a
    3000-node gas are 36 MB). The spare room is at most an eighth of each side."""
    m = cur.shape[0]
    if buf is None or cur.base is not buf or buf.shape[0] < size:
        cap = max(size, m + m // 8)
        buf = np.full((cap, cap) if square else (cap, *cur.shape[1:]), fill, cur.dtype)
        if square:
            buf[:m, :m] = cur
        else:
            buf[:m] = cur
    elif square:
        buf[m:size, :size] = fill
        buf[:size, m:size] = fill
    else:
        buf[m:size] = fill
    return buf, (buf[:size, :size] if square else buf[:size])


class _UnitNorms:
    """The squared norms of a head's units for its batch-1 path, kept while the units array is
    the same object and moved rows update them (the batch rules return new arrays, which
    recompute them; an edit in place of the units from outside must reassign them)."""
    _sq = _sq_of = None

    def _norms(self, units: np.ndarray) -> np.ndarray:
        if self._sq_of is not units:
            self._sq, self._sq_of = np.vecdot(units, units), units
        return self._sq


class HebbianHead(Head):
    kind, learns = "hebbian", "closed-form"

    def __init__(self, weight, counts, labels, tasks, names=None, oja: bool = False,
                 lr: float = 0.01, balanced: bool = True) -> None:
        super().__init__(labels, tasks, names)
        self.weight = np.asarray(weight, dtype=np.float32).copy()
        self.counts = np.asarray(counts, dtype=np.float32).copy()
        self.params = {"oja": bool(oja), "lr": float(lr), "balanced": bool(balanced)}
        self._weight_buf = None  # add_class's spare capacity (_grown)

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[1])

    def scores(self, feats, task_ids=None) -> np.ndarray:
        feats = self.check_features(feats)
        balanced = self.params["balanced"] and not self.params["oja"]
        return self._masked(hebbian_scores(feats, self.weight, self.counts, balanced), task_ids)

    def learn_rows(self, feats, rows) -> None:
        if self.params["oja"] and len(rows) == 1:
            # One sample: only its class's row moves, w_j + lr (r x - r^2 w_j), r = w_j . x,
            # written out; bitwise what oja_update gives (tested), the same products in order
            x, j = normalize_rows(feats), int(rows[0])
            r = np.matmul(x, self.weight.T)[0, j]
            w = self.weight[j]
            self.weight[j] = w + np.float32(self.params["lr"]) * (r * x[0] - (r * r) * w)
            self.counts[j] += np.float32(1)
        elif self.params["oja"]:
            self.weight, self.counts = oja_update(self.weight, self.counts, feats, rows,
                                                  self.params["lr"])
        elif len(rows) == 1:
            # One sample: (p W + onehot^T x) / (p + 1) touches row j with x and scales the rest;
            # written out it is bitwise what hebbian_update gives (tested), without ~40 us of
            # dispatch over a dozen small array calls.
            x = normalize_rows(feats)[0]
            p = self.counts.sum(dtype=np.float32)
            w = p * self.weight
            w[rows[0]] += x
            self.weight = w / (p + np.float32(1))
            self.counts[rows[0]] += np.float32(1)
        else:
            self.weight, self.counts = hebbian_update(self.weight, self.counts, feats, rows)

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        feats = self.check_features(feats)
        if self.params["oja"]:  # Oja's rule cannot leave 0: start at the shots' direction
            row = oja_init(feats, self.weight)
            self.weight = np.concatenate([self.weight, row[None, :]])
            self.counts = np.append(self.counts, np.float32(len(feats)))
            self._add_row(label, task, name)
            return
        # hebbian_update with the new class's row alone taking the shots, (p W + Y^T X) / (p + N),
        # done in place inside spare capacity (_grown): two passes over W and no copy of it, so
        # a class costs O(C D) flops without the O(C D) allocations (1.7 ms at 600 classes of
        # 400 features before, when every class copied W twice)
        x = normalize_rows(feats)
        c, p = len(self.weight), self.counts.sum(dtype=np.float32)
        self._weight_buf, w = _grown(self._weight_buf, self.weight, c + 1, 0.0)
        w *= p
        w[c] += np.matmul(np.ones((1, len(x)), np.float32), x)[0]
        w /= p + np.float32(len(x))
        self.weight = w
        self.counts = np.append(self.counts, np.float32(len(x)))
        self._add_row(label, task, name)

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "weight": self.weight.copy(), "counts": self.counts.copy(),
                "params": dict(self.params)}


class CompetitiveHead(_UnitNorms, Head):
    kind, learns = "competitive", "closed-form"

    def __init__(self, protos, wins, labels, tasks, names=None, per_class: int = 1,
                 lr: float = 0.1, decay: float = 0.0, by: str = "distance",
                 lvq: bool = False) -> None:
        super().__init__(labels, tasks, names)
        self.protos = np.asarray(protos, dtype=np.float32).copy()
        self.wins = np.asarray(wins, dtype=np.float32).copy()
        self.params = {"per_class": int(per_class), "lr": float(lr), "decay": float(decay),
                       "by": str(by), "lvq": bool(lvq)}
        self._protos_buf = None  # add_class's spare capacity (_grown)

    @property
    def n_features(self) -> int:
        return int(self.protos.shape[1])

    def scores(self, feats, task_ids=None) -> np.ndarray:
        feats = self.check_features(feats)
        return self._masked(class_scores(feats, self.protos, self.params["per_class"]), task_ids)

    def learn(self, feats, y, task_ids=None) -> None:
        feats = self.check_features(feats)
        rows = self.rows_of(y, task_ids)
        p = self.params
        if len(rows) == 1 and p["by"] == "distance":
            self._learn_one(feats[0], int(rows[0]))
            return
        owner = unit_owner(len(self.labels), p["per_class"], rows)
        self.protos, self.wins = competitive_update(self.protos, self.wins, feats, rows, owner,
                                                    p["lr"], p["decay"], p["by"], p["lvq"])

    def _learn_one(self, x: np.ndarray, row: int) -> None:
        """One sample, the own class's closest unit moving: bitwise what competitive_update
        gives at batch 1 (tested), as a handful of numpy calls on the class's k units (or, for
        LVQ, the distances to every unit), the units' squared norms kept between calls."""
        p, k = self.params, self.params["per_class"]
        lo, sq = row * k, self._norms(self.protos)
        if p["lvq"]:
            d, off = _sq_dist(x, self.protos, sq), lo
        else:
            d, off = _sq_dist(x, self.protos[lo:lo + k], sq[lo:lo + k]), 0
        w = int(d[off:off + k].argmin())
        if p["lvq"] and len(d) > k:  # a closer unit of another class moves away (LVQ1)
            best = d[off + w]
            d[off:off + k] = np.inf
            r = int(d.argmin())
            if d[r] < best:
                self._move(x, r, -1.0)
        self._move(x, lo + w, 1.0)
        self.wins[lo + w] += 1.0

    def _move(self, x: np.ndarray, i: int, sign: float) -> None:
        """Unit i by ``sign * eta (x - p_i)``, eta = lr / (1 + decay * wins_i) in float32."""
        p = self.params
        eta = np.float32(p["lr"]) / (1 + p["decay"] * self.wins[i])
        cur = self.protos[i]
        moved = x - cur
        moved *= eta if sign > 0 else -eta
        moved += cur
        self.protos[i] = moved
        self._sq[i] = np.vecdot(moved, moved)

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        feats = self.check_features(feats)
        k, m = self.params["per_class"], len(self.protos)
        valid = self._sq_of is self.protos
        self._protos_buf, protos = _grown(self._protos_buf, self.protos, m + k, 0.0)
        protos[m:] = new = shot_prototypes(feats, k)
        if valid:  # the kept norms grow by the new rows
            self._sq = np.concatenate([self._sq, np.vecdot(new, new)])
            self._sq_of = protos
        self.protos = protos
        self.wins = np.concatenate([self.wins, np.zeros(k, np.float32)])
        self._add_row(label, task, name)

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "protos": self.protos.copy(), "wins": self.wins.copy(),
                "params": dict(self.params)}


class NeuralGasHead(_UnitNorms, Head):
    kind, learns = "neural-gas", "closed-form"

    def __init__(self, nodes, ages, alive, edge_age, labels, tasks, names=None,
                 per_class: int = 5, eps: float = 0.05, lam: float = 1.0, tau: float = 100.0,
                 max_age: float = 50.0, max_nodes: int = 0) -> None:
        super().__init__(labels, tasks, names)
        self.nodes = np.asarray(nodes, dtype=np.float32).copy()
        self.ages = np.asarray(ages, dtype=np.float32).copy()
        self.alive = np.asarray(alive, dtype=bool).copy()
        self.edge_age = np.asarray(edge_age, dtype=np.float32).copy()
        self.params = {"per_class": int(per_class), "eps": float(eps), "lam": float(lam),
                       "tau": float(tau), "max_age": float(max_age), "max_nodes": int(max_nodes)}
        self._all_alive, self._alive_of, self._h = False, None, None  # _learn_one's caches
        self._nodes_buf = self._edges_buf = None  # add_class's spare capacity (_grown)

    @property
    def n_features(self) -> int:
        return int(self.nodes.shape[1])

    def scores(self, feats, task_ids=None) -> np.ndarray:
        feats = self.check_features(feats)
        s = class_scores(feats, self.nodes, self.params["per_class"], self.alive)
        return self._masked(s, task_ids)

    def learn(self, feats, y, task_ids=None) -> None:
        feats = self.check_features(feats)
        rows = self.rows_of(y, task_ids)
        p = self.params
        k = p["per_class"]
        if len(rows) == 1:
            self._node_sq()  # and whether every slot is alive
            r = int(rows[0])
            if self._all_alive or self.alive[r * k:(r + 1) * k].all():
                self._learn_one(feats[0], r)
                return
        self.nodes, self.alive = fill_slots(self.nodes, self.alive, feats, rows, p["per_class"],
                                            p["max_nodes"])
        self.nodes, self.ages, self.edge_age = ng_update(
            self.nodes, self.ages, self.edge_age, feats, rows, None, self.alive, p["eps"],
            p["lam"], p["tau"], p["max_age"], inplace_edges=True, per_class=k)

    def _learn_one(self, x: np.ndarray, row: int) -> None:
        """One sample of a class whose slots are all alive: its k nodes rank and move, the two
        closest living nodes of the gas are linked; bitwise what ng_update gives at batch 1
        (tested), written for a device: ndarray methods and in-place ufuncs (numpy's function
        wrappers and scalar arithmetic cost about a microsecond a call), the nodes' squared norms
        kept between calls, and the rank weights ``eps exp(-r / lam)`` of r = 0..k-1 taken from
        a table, since the own class's k ranks are a permutation of them."""
        p, k = self.params, self.params["per_class"]
        sq = self._node_sq()
        d = self.nodes.dot(x)  # ||n||^2 - 2 n.x, as order_scores sums it
        d *= -2.0
        d += sq
        if not self._all_alive:
            d = np.where(self.alive, d, np.float32(np.inf))
        own = slice(row * k, (row + 1) * k)
        mine = d[own]
        steps = self._rank_weights()[mine.argsort(stable=True).argsort(stable=True)]
        steps /= 1 + self.ages[own] / p["tau"]
        cur = self.nodes[own]  # a view: the class's nodes move in place
        moved = x - cur
        moved *= steps[:, None]
        cur += moved
        sq[own] = np.vecdot(cur, cur)
        self.ages[row * k + int(mine.argmin())] += 1.0
        if len(d) >= 2 and (self._all_alive or int(self.alive.sum()) >= 2):
            i = int(d.argmin())  # the first minimum: what a stable sort puts first
            d[i] = np.inf
            j = int(d.argmin())
            ages = self.edge_age[i]  # the competitive Hebbian step on row i, in place:
            ages += ages >= 0  # every edge of the winner ages (-1 + 0 stays -1)
            ages[ages > p["max_age"]] = -1  # those too old go
            ages[j] = 0  # the winner pair's edge is (re)set
            self.edge_age[:, i] = ages

    def _node_sq(self) -> np.ndarray:
        """The nodes' squared norms (:meth:`_UnitNorms._norms`), and whether every slot is
        alive, kept while ``alive`` is the same array."""
        if self._alive_of is not self.alive:
            self._all_alive, self._alive_of = bool(self.alive.all()), self.alive
        return self._norms(self.nodes)

    def _rank_weights(self) -> np.ndarray:
        """``eps exp(-r / lam)`` for ranks r = 0..k-1, float32, as rank_steps computes them."""
        if self._h is None:
            p = self.params
            r = np.arange(p["per_class"], dtype=np.float32)
            self._h = p["eps"] * np.exp(-r / p["lam"])
        return self._h

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        feats = self.check_features(feats)
        k, cap = self.params["per_class"], self.params["max_nodes"]
        if cap and int(self.alive.sum()) >= cap:
            raise DataError(f"the neural-gas head is full ({int(self.alive.sum())} of "
                            f"{cap} nodes); give it a larger memory budget or fewer nodes "
                            f"per class")
        m, valid = len(self.nodes), self._sq_of is self.nodes
        self._nodes_buf, nodes = _grown(self._nodes_buf, self.nodes, m + k, 0.0)
        self._edges_buf, self.edge_age = _grown(self._edges_buf, self.edge_age, m + k, -1.0,
                                                square=True)
        self.ages = np.concatenate([self.ages, np.zeros(k, np.float32)])
        alive = np.concatenate([self.alive, np.zeros(k, bool)])
        # the new class's k slots take its shots (the farthest points among them when they are
        # more), within the cap: fill_slots' rule for one class, written into the buffer
        room = (cap - int(self.alive.sum())) if cap else k
        n = min(k, len(feats), room)
        nodes[m:m + n] = feats if n == len(feats) else farthest_points(feats, n)
        alive[m:m + n] = True
        self.nodes, self.alive = nodes, alive
        if valid:  # the kept norms grow by the new rows (0 for the dead slots)
            self._sq, self._sq_of = np.concatenate([self._sq, np.vecdot(
                nodes[m:], nodes[m:])]), nodes
        self._add_row(label, task, name)

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "nodes": self.nodes.copy(), "ages": self.ages.copy(),
                "alive": self.alive.copy(), "edge_age": self.edge_age.copy(),
                "params": dict(self.params)}


class SLDAHead(Head):
    kind, learns = "slda", "closed-form"

    def __init__(self, sums, counts, scatter, labels, tasks, names=None, shrink: float = 1.0,
                 prior: float = 0.0) -> None:
        super().__init__(labels, tasks, names)
        self.sums = np.asarray(sums, dtype=np.float32).copy()
        self.counts = np.asarray(counts, dtype=np.float32).copy()
        self.scatter = np.asarray(scatter, dtype=np.float32).copy()
        d = self.n_features
        if self.scatter.shape != (d, d):
            raise ValueError(f"a scatter shaped {self.scatter.shape} for {d} features")
        if not (np.isfinite(shrink) and shrink >= 0 and np.isfinite(prior) and prior >= 0):
            raise ValueError(f"shrink {shrink} and prior {prior} must be numbers >= 0")
        self.params = {"shrink": float(shrink), "prior": float(prior)}
        self._prepared = None  # (P, centre, projected means, known) until the head learns again
        self._sums_buf = None  # add_class's spare capacity (_grown)

    @property
    def n_features(self) -> int:
        return int(self.sums.shape[1])

    def scores(self, feats, task_ids=None) -> np.ndarray:
        feats = self.check_features(feats)
        if self._prepared is None:  # an eigendecomposition of the scatter, once per change
            self._prepared = slda_prepare(self.sums, self.counts, self.scatter,
                                          self.params["shrink"])
        return self._masked(slda_scores(feats, *self._prepared), task_ids)

    def learn_rows(self, feats, rows) -> None:
        if len(rows) == 1:
            # One sample of class j (n_j so far): the scatter gains n_j/(n_j+1) d d^T with
            # d = x - mu_j, the pairwise update at b = 1, as a rank-1 update in place, in blocks
            # of rows small enough (64 KB) that numpy's temporaries stay in malloc's heap: a
            # (D, D) temporary is mmapped and faulted in afresh by every call (about 1 ms at
            # D = 400 on the test machine, against 0.15 ms in blocks)
            j, x = int(rows[0]), feats[0]
            n = self.counts[j]
            if n > 0:
                d = x - self.sums[j] / n
                dw = (n / (n + np.float32(1))) * d
                step = max(1, 16384 // len(d))
                for i in range(0, len(d), step):
                    self.scatter[i:i + step] += np.multiply.outer(dw[i:i + step], d)
            self.sums[j] += x
            self.counts[j] += np.float32(1)
        else:
            self.sums, self.counts, self.scatter = slda_update(self.sums, self.counts,
                                                               self.scatter, feats, rows)
        self._prepared = None

    def seed_scatter(self, feats, y) -> None:
        """Add the within-class spread of labelled features whose classes the head does not keep
        (a backbone's own training data, say) to the scatter, as a prior for the metric; ``y``
        any labels, one per row, of at least one class with two samples."""
        feats = self.check_features(feats)
        y = np.asarray(y).reshape(-1)
        if len(y) != len(feats):
            raise DataError(f"seed_scatter needs one label per feature row, got {len(feats)} "
                            f"rows and {len(y)} labels")
        classes, inv = np.unique(y, return_inverse=True)
        if len(feats) <= len(classes):
            raise DataError("seed_scatter needs a class with two samples or more: a class's "
                            "spread is measured around its own mean")
        self.scatter = self.scatter + within_scatter(feats, inv, len(classes))
        self.params["prior"] += float(len(feats))
        self._prepared = None

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        # slda_update for a class new to the head (n = 0, so no between term): its shots' sum
        # and centred scatter, the sums grown inside spare capacity (_grown), so a class costs
        # O(k D^2) for k shots whatever the number of classes already held
        feats = self.check_features(feats)
        c = len(self.sums)
        self._sums_buf, sums = _grown(self._sums_buf, self.sums, c + 1, 0.0)
        total = np.matmul(np.ones((1, len(feats)), np.float32), feats)[0]
        centred = feats - total / np.float32(len(feats))
        self.scatter += np.matmul(centred.T, centred)
        sums[c] = total
        self.sums = sums
        self.counts = np.append(self.counts, np.float32(len(feats)))
        self._add_row(label, task, name)
        self._prepared = None

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "sums": self.sums.copy(), "counts": self.counts.copy(),
                "scatter": self.scatter.copy(), "params": dict(self.params)}


KINDS = {"hebbian": (HebbianHead, ("weight", "counts")),
         "competitive": (CompetitiveHead, ("protos", "wins")),
         "neural-gas": (NeuralGasHead, ("nodes", "ages", "alive", "edge_age")),
         "slda": (SLDAHead, ("sums", "counts", "scatter"))}


def from_arrays(head: dict) -> Head:
    cls, keys = KINDS[head["kind"]]
    params = dict(head.get("params") or {})
    return cls(*(head[k] for k in keys), head["labels"], head["tasks"], head.get("names") or {},
               **params)


def row_shape(head: Head) -> tuple[int]:
    """``(classes,)`` if every array of ``head`` agrees with its number of class rows, else the
    first disagreeing shape (what :func:`edgelll.runtime.heads.head_from_arrays` checks)."""
    c = len(head.labels)
    if isinstance(head, HebbianHead):
        shapes = [head.weight.shape[:1], head.counts.shape]
    elif isinstance(head, SLDAHead):
        shapes = [head.sums.shape[:1], head.counts.shape]
    else:
        k = head.params["per_class"]
        units = head.protos if isinstance(head, CompetitiveHead) else head.nodes
        extra = [head.wins.shape] if isinstance(head, CompetitiveHead) else [
            head.ages.shape, head.alive.shape, head.edge_age.shape[:1], head.edge_age.shape[1:]]
        shapes = [(s[0] // k,) if s[0] % k == 0 else s for s in [units.shape[:1], *extra]]
    return next((s for s in shapes if s != (c,)), (c,))


def empty_head(kind: str, n_features: int, **params) -> Head:
    """A head of ``kind`` with no class yet (classes join by ``add_class``)."""
    cls, keys = KINDS[kind]
    d = int(n_features)
    zeros = {"weight": (0, d), "counts": (0,), "protos": (0, d), "wins": (0,), "nodes": (0, d),
             "ages": (0,), "alive": (0,), "edge_age": (0, 0), "sums": (0, d), "scatter": (d, d)}
    arrays = [np.zeros(zeros[k], bool if k == "alive" else np.float32) for k in keys]
    return cls(*arrays, np.zeros(0, np.int64), np.zeros(0, np.int64), {}, **params)

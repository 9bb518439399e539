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

Every head keeps one row per class (``labels``, ``tasks``) and scores classes; option values
travel in ``params``, the arrays in :data:`edgelll.runtime.format.HEAD_ARRAYS`.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .competitive import class_scores, competitive_update, shot_prototypes, unit_owner
from .hebbian import hebbian_scores, hebbian_update, oja_init, oja_update
from .heads import Head
from .rules import normalize_rows
from .neural_gas import fill_slots, ng_update, update_edges


class HebbianHead(Head):
    kind, learns = "hebbian", "closed-form"

    def __init__(self, weight, counts, labels, tasks, names=None, oja: bool = False,
                 lr: float = 0.01, balanced: bool = True) -> None:
        super().__init__(labels, tasks, names)
        self.weight = np.asarray(weight, dtype=np.float32).copy()
        self.counts = np.asarray(counts, dtype=np.float32).copy()
        self.params = {"oja": bool(oja), "lr": float(lr), "balanced": bool(balanced)}

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

    def learn(self, feats, y, task_ids=None) -> None:
        feats = self.check_features(feats)
        self.learn_rows(feats, self.rows_of(y, task_ids))

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        feats = self.check_features(feats)
        if self.params["oja"]:  # Oja's rule cannot leave 0: start at the shots' direction
            row = oja_init(feats, self.weight)
            self.weight = np.concatenate([self.weight, row[None, :]])
            self.counts = np.append(self.counts, np.float32(len(feats)))
            self._add_row(label, task, name)
            return
        self.weight = np.concatenate([self.weight, np.zeros((1, self.n_features), np.float32)])
        self.counts = np.append(self.counts, np.float32(0))
        self._add_row(label, task, name)
        self.learn_rows(feats, np.full(len(feats), len(self.labels) - 1, dtype=np.int64))

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "weight": self.weight.copy(), "counts": self.counts.copy(),
                "params": dict(self.params)}


class CompetitiveHead(Head):
    kind, learns = "competitive", "closed-form"

    def __init__(self, protos, wins, labels, tasks, names=None, per_class: int = 1,
                 lr: float = 0.1, decay: float = 0.0, by: str = "distance",
                 lvq: bool = False) -> None:
        super().__init__(labels, tasks, names)
        self.protos = np.asarray(protos, dtype=np.float32).copy()
        self.wins = np.asarray(wins, dtype=np.float32).copy()
        self.params = {"per_class": int(per_class), "lr": float(lr), "decay": float(decay),
                       "by": str(by), "lvq": bool(lvq)}

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
        gives at batch 1 (tested), as a handful of numpy calls on the class's k units."""
        p, k = self.params, self.params["per_class"]
        units = self.protos if p["lvq"] else self.protos[row * k:(row + 1) * k]
        d = np.maximum((x * x).sum() - 2 * np.dot(units, x) + (units * units).sum(axis=1),
                       np.float32(0))
        lo = row * k if p["lvq"] else 0
        w = int(np.argmin(d[lo:lo + k]))
        if p["lvq"] and len(units) > k:  # a closer unit of another class moves away (LVQ1)
            others = d.copy()
            others[lo:lo + k] = np.inf
            r = int(np.argmin(others))
            if others[r] < d[lo + w]:
                eta = np.float32(p["lr"]) / (1 + p["decay"] * self.wins[r])
                self.protos[r] = self.protos[r] + (-eta) * (x - self.protos[r])
        w += row * k
        eta = np.float32(p["lr"]) / (1 + p["decay"] * self.wins[w])
        self.protos[w] = self.protos[w] + eta * (x - self.protos[w])
        self.wins[w] += np.float32(1)

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        feats = self.check_features(feats)
        k = self.params["per_class"]
        self.protos = np.concatenate([self.protos, shot_prototypes(feats, k)])
        self.wins = np.concatenate([self.wins, np.zeros(k, np.float32)])
        self._add_row(label, task, name)

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "protos": self.protos.copy(), "wins": self.wins.copy(),
                "params": dict(self.params)}


class NeuralGasHead(Head):
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
        if len(rows) == 1 and self.alive[int(rows[0]) * k:(int(rows[0]) + 1) * k].all():
            self._learn_one(feats[0], int(rows[0]))
            return
        owner = unit_owner(len(self.labels), p["per_class"], rows)
        self.nodes, self.alive = fill_slots(self.nodes, self.alive, feats, rows, p["per_class"],
                                            p["max_nodes"])
        self.nodes, self.ages, self.edge_age = ng_update(
            self.nodes, self.ages, self.edge_age, feats, rows, owner, self.alive, p["eps"],
            p["lam"], p["tau"], p["max_age"])

    def _learn_one(self, x: np.ndarray, row: int) -> None:
        """One sample of a class whose slots are all alive: its k nodes rank and move, the two
        closest living nodes of the gas are linked; what ng_update gives at batch 1 (tested), as
        a dozen numpy calls instead of ~60 array-API ones."""
        p, k = self.params, self.params["per_class"]
        d = (x * x).sum() - 2 * np.dot(self.nodes, x) + (self.nodes * self.nodes).sum(axis=1)
        d = np.where(self.alive, np.maximum(d, np.float32(0)), np.float32(np.inf))
        own = slice(row * k, (row + 1) * k)
        ranks = np.argsort(np.argsort(d[own], stable=True), stable=True).astype(np.float32)
        steps = p["eps"] * np.exp(-ranks / p["lam"]) / (1 + self.ages[own] / p["tau"])
        self.nodes[own] = self.nodes[own] + steps[:, None] * (x - self.nodes[own])
        self.ages[row * k + int(np.argmin(d[own]))] += np.float32(1)
        if int(self.alive.sum()) >= 2:
            first, second = np.argsort(d, stable=True)[:2]
            self.edge_age = update_edges(self.edge_age, first[None], second[None], p["max_age"])

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        feats = self.check_features(feats)
        k, cap = self.params["per_class"], self.params["max_nodes"]
        if cap and int(self.alive.sum()) >= cap:
            raise DataError(f"the neural-gas head is full ({int(self.alive.sum())} of "
                            f"{cap} nodes); give it a larger memory budget or fewer nodes "
                            f"per class")
        m = len(self.nodes)
        self.nodes = np.concatenate([self.nodes, np.zeros((k, self.n_features), np.float32)])
        self.ages = np.concatenate([self.ages, np.zeros(k, np.float32)])
        alive = np.concatenate([self.alive, np.zeros(k, bool)])
        edges = np.full((m + k, m + k), -1, np.float32)
        edges[:m, :m] = self.edge_age
        self.edge_age = edges
        self._add_row(label, task, name)
        rows = np.full(len(feats), len(self.labels) - 1, dtype=np.int64)
        self.nodes, self.alive = fill_slots(self.nodes, alive, feats, rows, k, cap)

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "nodes": self.nodes.copy(), "ages": self.ages.copy(),
                "alive": self.alive.copy(), "edge_age": self.edge_age.copy(),
                "params": dict(self.params)}


KINDS = {"hebbian": (HebbianHead, ("weight", "counts")),
         "competitive": (CompetitiveHead, ("protos", "wins")),
         "neural-gas": (NeuralGasHead, ("nodes", "ages", "alive", "edge_age"))}


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
             "ages": (0,), "alive": (0,), "edge_age": (0, 0)}
    arrays = [np.zeros(zeros[k], bool if k == "alive" else np.float32) for k in keys]
    return cls(*arrays, np.zeros(0, np.int64), np.zeros(0, np.int64), {}, **params)

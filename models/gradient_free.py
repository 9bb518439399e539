"""Heads that learn without gradients, for training (torch, CPU or CUDA): the array-API rules of
``edgelll.runtime`` (:mod:`edgelll.runtime.hebbian`, :mod:`~edgelll.runtime.competitive`,
:mod:`~edgelll.runtime.neural_gas`, :mod:`~edgelll.runtime.slda`) on torch tensors, the same functions the device runs on numpy.

Each is a closed-form head (``learns = "closed-form"``, :meth:`update` under ``no_grad``) that
decides predictions on its own (``decides``): with an ``inner`` gradient head, training mode
returns the inner logits (the loss that shapes the backbone before it is frozen) and eval mode
its own class scores. The state is buffers, so checkpoints and ``--memory`` count it; a class's
rows grow when an experience brings it (:meth:`adapt`) and are set from its first samples.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from edgelll.runtime.competitive import (class_scores, competitive_update, shot_prototypes,
                                         unit_owner)
from edgelll.runtime.hebbian import hebbian_scores, hebbian_update, oja_init, oja_update
from edgelll.runtime.neural_gas import fill_slots, ng_update
from edgelll.runtime.slda import slda_prepare, slda_scores, slda_update

from .heads import Head

DEFAULTS = {"hebbian": {"oja": False, "lr": 0.01, "balanced": True},
            "competitive": {"per_class": 3, "lr": 0.1, "decay": 0.0, "by": "distance",
                            "lvq": False},
            "neural-gas": {"per_class": 5, "eps": 0.05, "lam": 1.0, "tau": 100.0,
                           "max_age": 50.0, "max_nodes": 0},
            "slda": {"shrink": 1.0, "prior": 0.0}}


class GradientFreeHead(Head):
    learns = "closed-form"
    decides = True
    units: ClassVar[str] = ""  # the buffer with one row per unit
    # a streaming statistic learns every sample once: later epochs over an experience's data
    # would count its rows again (the prototype heads take them as further passes)
    single_pass: ClassVar[bool] = False

    def __init__(self, inner: Head | None, n_features: int, n_classes: int = 0, **params) -> None:
        super().__init__()
        self.inner = inner
        self.n_features = int(n_features)
        unknown = set(params) - set(DEFAULTS[self.kind])
        if unknown:
            raise ValueError(f"unknown {self.kind} head settings {sorted(unknown)}")
        self.params = {**DEFAULTS[self.kind], **params}
        ref = next(inner.parameters(), None) if inner is not None else None
        self._build(int(n_classes), ref.device if ref is not None else None)

    @property
    def per_class(self) -> int:
        return int(self.params.get("per_class", 1))

    @property
    def n_rows(self) -> int:
        return getattr(self, self.units).shape[0] // self.per_class

    @property
    def n_classes(self) -> int:
        return max(self.n_rows, super().n_classes)

    def spec(self) -> dict:
        return {"kind": self.kind, "classes": self.n_rows, "features": self.n_features,
                "params": dict(self.params),
                "inner": self.inner.spec() if self.inner is not None else None}

    def adapt(self, exp) -> bool:
        changed = super().adapt(exp)
        grow = max(exp.head_size, self.n_classes) - self.n_rows
        if grow > 0:
            self._grow(grow)
        return changed

    @torch.no_grad()
    def update(self, feats: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
               again: bool = False) -> None:
        if not (again and self.single_pass):
            self.learn(feats.flatten(1).float(), y.long())
        super().update(feats, y, t, again)

    @torch.no_grad()
    def refit(self, feats: torch.Tensor, y: torch.Tensor, batch: int = 256) -> None:
        """Forget the classes of ``y`` and learn them again from ``feats`` (after an experience
        whose backbone still moved: the features it was learned from are stale)."""
        feats, y = feats.flatten(1).float(), y.long()
        self.reset(torch.unique(y))
        for start in range(0, len(y), batch):
            self.learn(feats[start:start + batch], y[start:start + batch])

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.inner is not None:
            return self.inner(feats, task_ids)
        return self.scores(feats.flatten(1).float())


class HebbianHead(GradientFreeHead):
    """w_ij = (1/p) sum_k x_i^k y_j^k as a running mean, or Oja's rule (``oja``)."""

    kind, units = "hebbian", "weight"

    def _build(self, n, device) -> None:
        self.register_buffer("weight", torch.zeros(n, self.n_features, device=device))
        self.register_buffer("counts", torch.zeros(n, device=device))

    def _grow(self, n) -> None:
        self.weight = torch.cat([self.weight, self.weight.new_zeros(n, self.n_features)])
        self.counts = torch.cat([self.counts, self.counts.new_zeros(n)])

    def learn(self, feats, y) -> None:
        if not self.params["oja"]:
            self.weight, self.counts = hebbian_update(self.weight, self.counts, feats, y)
            return
        for c in torch.unique(y[self.counts[y] == 0]).tolist():  # Oja cannot leave w = 0
            self.weight[c] = oja_init(feats[y == c], self.weight)
        self.weight, self.counts = oja_update(self.weight, self.counts, feats, y, self.params["lr"])

    def reset(self, classes) -> None:
        p = self.counts.sum()
        self.weight[classes] = 0
        self.counts[classes] = 0
        if not self.params["oja"] and self.counts.sum() > 0:  # the others' mean over fewer samples
            self.weight *= p / self.counts.sum()

    def summary(self) -> dict:
        return {"classes": self.n_rows, "samples": int(self.counts.sum()),
                "weight_norm_max": float(self.weight.norm(dim=1).max()) if self.n_rows else 0.0}

    def scores(self, feats):
        balanced = self.params["balanced"] and not self.params["oja"]
        return hebbian_scores(feats, self.weight, self.counts, balanced)


class CompetitiveHead(GradientFreeHead):
    """``per_class`` prototypes per class; the own class's winner moves (LVQ1 with ``lvq``)."""

    kind, units = "competitive", "protos"

    def _build(self, n, device) -> None:
        k = self.per_class
        self.register_buffer("protos", torch.zeros(n * k, self.n_features, device=device))
        self.register_buffer("wins", torch.zeros(n * k, device=device))
        self.register_buffer("counts", torch.zeros(n, device=device))

    def _grow(self, n) -> None:
        k = self.per_class
        self.protos = torch.cat([self.protos, self.protos.new_zeros(n * k, self.n_features)])
        self.wins = torch.cat([self.wins, self.wins.new_zeros(n * k)])
        self.counts = torch.cat([self.counts, self.counts.new_zeros(n)])

    def learn(self, feats, y) -> None:
        k, p = self.per_class, self.params
        for c in torch.unique(y[self.counts[y] == 0]).tolist():  # a new class: from its shots
            self.protos[c * k:(c + 1) * k] = shot_prototypes(feats[y == c], k)
        owner = unit_owner(self.n_rows, k, y)
        self.protos, self.wins = competitive_update(self.protos, self.wins, feats, y, owner,
                                                    p["lr"], p["decay"], p["by"], p["lvq"])
        self.counts += torch.bincount(y, minlength=self.n_rows).to(self.counts.dtype)

    def reset(self, classes) -> None:
        self.counts[classes] = 0
        self.wins.view(-1, self.per_class)[classes] = 0

    def summary(self) -> dict:
        return {"classes": self.n_rows, "units": int(self.wins.numel()),
                "units_that_won": int((self.wins > 0).sum()), "wins": int(self.wins.sum())}

    def scores(self, feats):
        known = (self.counts > 0).repeat_interleave(self.per_class)
        return class_scores(feats, self.protos, self.per_class, known)


class NeuralGasHead(GradientFreeHead):
    """Per-class node slots, rank-schedule steps shrinking with age, competitive Hebbian edges."""

    kind, units = "neural-gas", "nodes"

    def _build(self, n, device) -> None:
        m = n * self.per_class
        self.register_buffer("nodes", torch.zeros(m, self.n_features, device=device))
        self.register_buffer("ages", torch.zeros(m, device=device))
        self.register_buffer("alive", torch.zeros(m, dtype=torch.bool, device=device))
        self.register_buffer("edge_age", torch.full((m, m), -1.0, device=device))

    def _grow(self, n) -> None:
        m, extra = self.nodes.shape[0], n * self.per_class
        self.nodes = torch.cat([self.nodes, self.nodes.new_zeros(extra, self.n_features)])
        self.ages = torch.cat([self.ages, self.ages.new_zeros(extra)])
        self.alive = torch.cat([self.alive, self.alive.new_zeros(extra)])
        edges = self.edge_age.new_full((m + extra, m + extra), -1.0)
        edges[:m, :m] = self.edge_age
        self.edge_age = edges

    def learn(self, feats, y) -> None:
        k, p = self.per_class, self.params
        self.nodes, self.alive = fill_slots(self.nodes, self.alive, feats, y, k, p["max_nodes"])
        self.nodes, self.ages, self.edge_age = ng_update(
            self.nodes, self.ages, self.edge_age, feats, y, None, self.alive, p["eps"],
            p["lam"], p["tau"], p["max_age"], per_class=k)

    def reset(self, classes) -> None:
        slots = (classes.view(-1, 1) * self.per_class
                 + torch.arange(self.per_class, device=classes.device)).flatten()
        self.alive[slots] = False
        self.ages[slots] = 0
        self.edge_age[slots] = -1
        self.edge_age[:, slots] = -1

    def summary(self) -> dict:
        return {"classes": self.n_rows, "nodes": int(self.alive.sum()),
                "edges": int((self.edge_age >= 0).sum()) // 2,
                "max_nodes": int(self.params["max_nodes"]), "wins": int(self.ages.sum())}

    def scores(self, feats):
        return class_scores(feats, self.nodes, self.per_class, self.alive)


class SLDAHead(GradientFreeHead):
    """Class sums and counts and one shared within-class scatter (streaming LDA)."""

    kind, units, single_pass = "slda", "sums", True

    def _build(self, n, device) -> None:
        d = self.n_features
        self.register_buffer("sums", torch.zeros(n, d, device=device))
        self.register_buffer("counts", torch.zeros(n, device=device))
        self.register_buffer("scatter", torch.zeros(d, d, device=device))
        self._prepared = (None, None)  # (what it was computed from, P and projected means)

    def _grow(self, n) -> None:
        self.sums = torch.cat([self.sums, self.sums.new_zeros(n, self.n_features)])
        self.counts = torch.cat([self.counts, self.counts.new_zeros(n)])

    def learn(self, feats, y) -> None:
        self.sums, self.counts, self.scatter = slda_update(self.sums, self.counts, self.scatter,
                                                           feats, y)

    def reset(self, classes) -> None:
        """Forget ``classes``; the scatter cannot be split by class, so it keeps the others'
        share of it (scaled by the samples that stay): exact when every class goes, as after
        the one experience that trains the backbone."""
        total = float(self.counts.sum()) + self.params["prior"]
        keep = total - float(self.counts[classes].sum())
        self.scatter *= keep / total if total > 0 else 0.0
        self.sums[classes] = 0
        self.counts[classes] = 0

    def summary(self) -> dict:
        return {"classes": self.n_rows, "samples": int(self.counts.sum()),
                "shrink": float(self.params["shrink"])}

    def scores(self, feats):
        key = tuple((t.data_ptr(), t._version) for t in (self.sums, self.counts, self.scatter))
        key += (self.params["shrink"],)
        if self._prepared[0] != key:  # one eigendecomposition per change of the state
            self._prepared = (key, slda_prepare(self.sums, self.counts, self.scatter,
                                                self.params["shrink"]))
        return slda_scores(feats, *self._prepared[1])


KINDS = {h.kind: h for h in (HebbianHead, CompetitiveHead, NeuralGasHead, SLDAHead)}


def from_spec(spec: dict, make_inner) -> GradientFreeHead:
    inner = make_inner(spec["inner"]) if spec.get("inner") else None
    return KINDS[spec["kind"]](inner, int(spec["features"]), int(spec["classes"]),
                               **dict(spec.get("params") or {}))

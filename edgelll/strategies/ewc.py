"""Elastic Weight Consolidation (Kirkpatrick et al. 2017, arXiv:1612.00796).

After each experience k the diagonal of the empirical Fisher information,
F_k = E_(x,y) [ (d log p(y|x, theta) / d theta)^2 ] at theta*_k, is stored with theta*_k, and later
training adds  (lambda / 2) * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2  (one penalty per past
experience, as in the paper). Per-sample gradients come from ``torch.func`` (vmap over grad) in
chunks, never from a Python loop over samples. Parameters that grew (a wider head) are penalised on
the part that existed at the anchor; new parameters are free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from ..errors import ConfigError
from .base import Batch, Plan, Strategy


@dataclass(frozen=True)
class EWCParams:
    lam: float = 5000.0  # penalty strength lambda
    fisher_samples: int = 1024  # samples of the experience used for the Fisher (0: all)
    chunk: int = 64  # per-sample gradients computed at once (bounds temporary memory)

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ConfigError(f"ewc.lam must be >= 0, got {self.lam}")
        if self.fisher_samples < 0 or self.chunk < 1:
            raise ConfigError("ewc.fisher_samples must be >= 0 and ewc.chunk >= 1")


def empirical_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     t: torch.Tensor | None, chunk: int = 64) -> dict[str, torch.Tensor]:
    """Mean over samples of the squared gradient of -log p(y|x) for every trainable parameter."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = dict(model.named_buffers())

    def nll(p, xi, yi, ti):
        args = (xi.unsqueeze(0),) if ti is None else (xi.unsqueeze(0), ti.unsqueeze(0))
        out = functional_call(model, ({**p, **frozen}, buffers), args)
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0, None if t is None else 0))
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    was_training = model.training
    model.eval()
    for start in range(0, x.shape[0], chunk):
        sl = slice(start, start + chunk)
        g = per_sample(params, x[sl], y[sl], None if t is None else t[sl])
        for k, gk in g.items():
            fisher[k] += gk.pow(2).sum(0)
    model.train(was_training)
    return {k: f / x.shape[0] for k, f in fisher.items()}


def quadratic_penalty(model: torch.nn.Module, importances: list[dict], anchors: list[dict]) -> torch.Tensor:
    """sum_k sum_i Omega_k,i (theta_i - theta*_k,i)^2 over each stored (importance, anchor) pair."""
    current = dict(model.named_parameters())
    total = None
    for omega, anchor in zip(importances, anchors):
        for name, w in omega.items():
            p = current.get(name)
            if p is None or not p.requires_grad:
                continue
            p = p[tuple(slice(0, n) for n in w.shape)]  # the part that existed at the anchor
            term = (w * (p - anchor[name]).pow(2)).sum()
            total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


class EWC(Strategy):
    name = "ewc"
    description = "elastic weight consolidation: Fisher-weighted pull to past solutions"
    Params = EWCParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []

    def extra_loss(self, ctx, batch, x, logits):
        if not self.fishers or self.params.lam == 0:
            return None
        return 0.5 * self.params.lam * quadratic_penalty(ctx.model, self.fishers, self.anchors)

    def after_experience(self, ctx, exp, data: Batch) -> None:
        n = len(data) if self.params.fisher_samples == 0 else min(len(data), self.params.fisher_samples)
        idx = torch.randperm(len(data), generator=ctx.generator)[:n].to(data.y.device)
        t = data.t[idx] if ctx.stream.uses_task_ids else None
        fisher = empirical_fisher(ctx.model, ctx.stream.prepare(data.x[idx]), data.y[idx], t,
                                  self.params.chunk)
        self.fishers.append(fisher)
        self.anchors.append({k: p.detach().clone() for k, p in ctx.model.named_parameters()
                             if k in fisher})

    def tensors(self) -> list[torch.Tensor]:
        return [t for group in (*self.fishers, *self.anchors) for t in group.values()]

    def planned_bytes(self, plan: Plan) -> int:
        # One Fisher and one anchor per experience, each at most the final trainable size.
        return 2 * plan.n_experiences * plan.trainable_bytes

    def state_dict(self) -> dict:
        return {"fishers": self.fishers, "anchors": self.anchors}

    def load_state_dict(self, state: dict) -> None:
        self.fishers = [dict(f) for f in state["fishers"]]
        self.anchors = [dict(a) for a in state["anchors"]]

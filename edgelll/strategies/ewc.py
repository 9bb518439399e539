"""Elastic Weight Consolidation (Kirkpatrick et al. 2017, arXiv:1612.00796).

After each experience k the diagonal of the empirical Fisher information,
F_k = E_(x,y) [ (d log p(y|x, theta) / d theta)^2 ] at theta*_k, is computed, and later training
adds the paper's penalty with one term per past experience:

    (lambda / 2) * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2.

The K terms are kept folded into one quadratic with the same value and gradient:
sum_k F_k (theta - a_k)^2 = F (theta - a)^2 + c with F = sum_k F_k, a = sum_k F_k a_k / F and the
scalar c = sum_k F_k a_k^2 - F a^2, so state and per-step cost do not grow with the number of
experiences (2x the parameters, not 2Kx). Per-sample gradients come from ``torch.func`` (vmap over
grad) in chunks, never a Python loop over samples. Parameters that grew (a wider head) are penalised
on the part that existed at the anchor; new rows are free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ._persample import linear_path, per_sample_mean, vmap_path
from .base import Batch, Plan, Strategy


@dataclass(frozen=True)
class EWCParams:
    lam: float = field(default=5000.0, metadata={"help": "penalty strength lambda"})
    fisher_samples: int = field(default=512, metadata={
        "help": "samples of the experience used for the Fisher (0: all)"})
    chunk: int = field(default=64, metadata={
        "help": "per-sample gradients computed at once (bounds temporary memory)"})

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ConfigError(f"ewc.lam must be >= 0, got {self.lam}")
        if self.fisher_samples < 0 or self.chunk < 1:
            raise ConfigError("ewc.fisher_samples must be >= 0 and ewc.chunk >= 1")


def _nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="sum")


def _square(g: torch.Tensor) -> torch.Tensor:
    return g * g


def empirical_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     t: torch.Tensor | None, chunk: int = 64) -> dict[str, torch.Tensor]:
    """Mean over samples of the squared gradient of -log p(y|x) for every trainable parameter."""
    return per_sample_mean(model, x, y, t, _nll, _square, chunk)


def _linear_fisher(model, x, y, t, chunk) -> dict[str, torch.Tensor] | None:
    """The exact linear-layer path, (G^2)^T (A^2); None for other models."""
    return linear_path(model, x, y, t, _nll, _square, chunk)


def _vmap_fisher(model, x, y, t, chunk) -> dict[str, torch.Tensor]:
    """The general path: torch.func per-sample gradients."""
    return vmap_path(model, x, y, t, _nll, _square, chunk)


def quadratic_penalty(model: torch.nn.Module, omega: dict, anchor: dict) -> torch.Tensor:
    """sum_i Omega_i (theta_i - anchor_i)^2 over the parameters (and parts) ``omega`` covers."""
    current = dict(model.named_parameters())
    total = None
    for name, w in omega.items():
        p = current.get(name)
        if p is None or not p.requires_grad:
            continue
        p = p[tuple(slice(0, n) for n in w.shape)]  # the part that existed at the anchor
        term = (w * (p - anchor[name]).pow(2)).sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def _pad(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if t.shape == shape:
        return t
    out = t.new_zeros(shape)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


def fold_quadratics(omega: dict, anchor: dict, offset: float, new_omega: dict,
                    new_anchor: dict) -> tuple[dict, dict, float]:
    """Add the term new_omega (theta - new_anchor)^2 to omega (theta - anchor)^2 + offset,
    returning the single quadratic (and scalar) equal to the sum for every theta."""
    out_w, out_a = {}, {}
    for name, fw in new_omega.items():
        fa = new_anchor[name]
        ow = _pad(omega[name], fw.shape) if name in omega else torch.zeros_like(fw)
        oa = _pad(anchor[name], fw.shape) if name in anchor else torch.zeros_like(fa)
        w = ow + fw
        a = torch.where(w > 0, (ow * oa + fw * fa) / w.clamp_min(torch.finfo(w.dtype).tiny), fa)
        offset += float((ow.double() * oa.double() ** 2).sum() + (fw.double() * fa.double() ** 2).sum()
                        - (w.double() * a.double() ** 2).sum())
        out_w[name], out_a[name] = w, a
    for name in omega.keys() - new_omega.keys():  # a parameter no longer trained keeps its term
        out_w[name], out_a[name] = omega[name], anchor[name]
    return out_w, out_a, offset


class EWC(Strategy):
    name = "ewc"
    description = "elastic weight consolidation: Fisher-weighted pull to past solutions"
    Params = EWCParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.omega: dict[str, torch.Tensor] = {}  # summed Fisher
        self.anchor: dict[str, torch.Tensor] = {}  # Fisher-weighted mean of the anchors
        self.offset = 0.0  # makes the folded penalty equal the paper's sum of terms
        self.experiences = 0

    def extra_loss(self, ctx, batch, logits):
        if not self.omega or self.params.lam == 0:
            return None
        return 0.5 * self.params.lam * (quadratic_penalty(ctx.model, self.omega, self.anchor)
                                        + self.offset)

    def importance(self, ctx, data: Batch) -> dict[str, torch.Tensor]:
        n = len(data) if self.params.fisher_samples == 0 else min(len(data), self.params.fisher_samples)
        idx = torch.randperm(len(data), generator=ctx.generator)[:n].to(data.y.device)
        return empirical_fisher(ctx.model, data.x[idx], data.y[idx], data.t[idx],
                                self.params.chunk)

    def after_experience(self, ctx, exp, data: Batch) -> None:
        fisher = self.importance(ctx, data)
        anchor = {k: p.detach().clone() for k, p in ctx.model.named_parameters() if k in fisher}
        self.omega, self.anchor, self.offset = fold_quadratics(self.omega, self.anchor, self.offset,
                                                               fisher, anchor)
        self.experiences += 1

    # how the importance scales when a Net2Net growth ties copies of a unit together (see
    # models/net2net.py): the empirical Fisher is a mean squared gradient
    importance_kind = "grad2"

    def after_growth(self, ctx, growth) -> None:
        from ..models.net2net import map_like
        self.omega = map_like(self.omega, growth, self.importance_kind)
        self.anchor = map_like(self.anchor, growth, "value")

    def tensors(self) -> list[torch.Tensor]:
        return [*self.omega.values(), *self.anchor.values()]

    def planned_bytes(self, plan: Plan) -> int:
        return 2 * plan.param_bytes  # one folded importance and one anchor per parameter

    def state_dict(self) -> dict:
        return {"omega": self.omega, "anchor": self.anchor, "offset": self.offset,
                "experiences": self.experiences}

    def load_state_dict(self, state: dict) -> None:
        self.omega, self.anchor = dict(state["omega"]), dict(state["anchor"])
        self.offset, self.experiences = float(state["offset"]), int(state["experiences"])

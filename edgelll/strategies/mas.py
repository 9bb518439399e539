"""Memory Aware Synapses (Aljundi et al. 2018, arXiv:1711.09601; the seed's MAS section).

The importance of a parameter is how sensitive the learned function is to it, measured without
labels: with F(x) the network's output (the logits over the classes its head has now),

    Omega_k,i = (1/N) sum_n | d ||F(x_n)||_2^2 / d theta_i |        on experience k's inputs,

and later training adds lambda * sum_k sum_i Omega_k,i (theta_i - theta*_k,i)^2 (no 1/2, as the
seed writes it). The per-experience terms are kept folded into one quadratic with the same value
and gradient (:func:`.ewc.fold_quadratics`): importances add up (Omega <- Omega + Omega_k, grown
head rows padded with zeros, so new parameters are free) in 2x the parameters of state.

The absolute value is taken per sample, so per-sample gradients are needed: ``torch.func`` (vmap
over grad) in chunks, or, when every trainable parameter is an ``nn.Linear`` applied once per
sample, the exact shortcut sum_n |g_n a_n^T| = |G|^T |A| (g_n: gradient at the layer's output,
a_n: its input). Units a head does not have (-inf padding of a multi-head model) are not outputs
and do not count in ||F(x)||^2. (Aljundi's code takes |.| of a batch gradient; this follows the
paper's and the seed's per-sample definition.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import Batch
from ._persample import linear_path, per_sample_mean, vmap_path
from .ewc import EWC, quadratic_penalty


@dataclass(frozen=True)
class MASParams:
    lam: float = field(default=1.0, metadata={"help": "penalty strength lambda"})
    samples: int = field(default=0, metadata={
        "help": "inputs of the experience used for the importance (0: all)"})
    chunk: int = field(default=64, metadata={
        "help": "per-sample gradients computed at once (bounds temporary memory)"})

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ConfigError(f"mas.lam must be >= 0, got {self.lam}")
        if self.samples < 0 or self.chunk < 1:
            raise ConfigError("mas.samples must be >= 0 and mas.chunk >= 1")


def _sq_norm(out: torch.Tensor) -> torch.Tensor:
    """sum over samples of ||F(x)||_2^2, over the units that exist (finite logits)."""
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out)).pow(2).sum()


def _output_norm(out: torch.Tensor, y: None) -> torch.Tensor:
    return _sq_norm(out)  # unsupervised: the labels are never read


def mas_importance(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor | None,
                   chunk: int = 64) -> dict[str, torch.Tensor]:
    """Mean over inputs of |d ||F(x)||^2 / d theta| for every trainable parameter (no labels)."""
    return per_sample_mean(model, x, None, t, _output_norm, torch.abs, chunk)


def _linear_importance(model, x, t, chunk) -> dict[str, torch.Tensor] | None:
    """The exact linear-layer path, |G|^T |A|; None for other models."""
    return linear_path(model, x, None, t, _output_norm, torch.abs, chunk)


def _vmap_importance(model, x, t, chunk) -> dict[str, torch.Tensor]:
    """The general path: torch.func per-sample gradients."""
    return vmap_path(model, x, None, t, _output_norm, torch.abs, chunk)


class MAS(EWC):
    name = "mas"
    description = "memory aware synapses: unsupervised output-sensitivity importance"
    Params = MASParams

    # The folded-quadratic state (omega, anchor, offset), after_experience, the byte plan and
    # checkpoints are EWC's; MAS differs only in its importance and the penalty's scale.
    importance_kind = "grad"  # a mean absolute gradient, under a Net2Net growth

    def extra_loss(self, ctx, batch, logits):
        if not self.omega or self.params.lam == 0:
            return None
        return self.params.lam * (quadratic_penalty(ctx.model, self.omega, self.anchor)
                                  + self.offset)

    def importance(self, ctx, data: Batch) -> dict[str, torch.Tensor]:
        """Omega_k on the experience's inputs; the labels are never read."""
        n = len(data) if self.params.samples == 0 else min(len(data), self.params.samples)
        idx = torch.randperm(len(data), generator=ctx.generator)[:n].to(data.x.device)
        return mas_importance(ctx.model, data.x[idx], data.t[idx], self.params.chunk)

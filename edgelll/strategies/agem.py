"""Averaged GEM (Chaudhry et al. 2019, "Efficient Lifelong Learning with A-GEM", arXiv:1812.00420).

A-GEM replaces GEM's one constraint per past experience by a single one on the average episodic
memory loss (section 4): min 1/2 ||g~ - g||^2 s.t. <g~, g_ref> >= 0, where g_ref is the gradient of
the loss on a batch drawn at random from the union of all past memories. That projection has the
closed form (section 4):

    g~ = g - (g^T g_ref / g_ref^T g_ref) g_ref   if g^T g_ref < 0,   else   g~ = g,

one extra forward/backward per step, whatever the number of past experiences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ._episodic import EpisodicStrategy, check_counts, flat_grad, write_grad
from .base import Batch


@dataclass(frozen=True)
class AGEMParams:
    per_experience: int = field(default=250, metadata={
        "help": "exemplars kept per experience (the paper: 250 per task on MNIST)",
        "resolved": "fitted"})
    size: int | None = field(default=None, metadata={
        "help": "total, split equally; None: fit --memory, else per_experience"})
    batch_size: int | None = field(default=None, metadata={
        "help": "memory rows for g_ref per step; None: the training batch size",
        "resolved": "cfg.batch_size"})

    def __post_init__(self) -> None:
        check_counts("agem", self.per_experience, self.size)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"agem.batch_size must be at least 1, got {self.batch_size}")


def project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's closed form on flat vectors; ``g`` itself, bit for bit, when nothing conflicts."""
    dot = g @ g_ref
    coef = dot.clamp(max=0) / (g_ref @ g_ref).clamp_min(torch.finfo(g.dtype).tiny)
    # Branch-free (no device sync); coef is exactly 0 when dot >= 0, and g - 0 * g_ref == g.
    return g - coef * g_ref


class AGEM(EpisodicStrategy):
    name = "agem"
    description = "averaged GEM: keep the gradient from increasing the average memory loss"
    Params = AGEMParams

    def _rows(self, batch_size: int) -> int:
        return self.params.batch_size or batch_size

    def extra_rows(self, batch_size: int) -> int:
        return self._rows(batch_size)  # one more forward/backward of this many rows per step

    def reference_batch(self, ctx, batch_size: int) -> Batch:
        """A uniform draw without replacement from the union of all past memories."""
        n = self.bounds[-1]
        idx = torch.randperm(n, generator=ctx.generator)[: self._rows(batch_size)].to(self.x.device)
        return Batch(self.x[idx], self.y[idx], self.t[idx])

    def step_flops(self, ctx, batch, forward_flops: int) -> int:
        # A forward and backward pass over the reference batch.
        if not self.n_stored:
            return 0
        return 3 * forward_flops * min(self._rows(ctx.cfg.batch_size), self.bounds[-1])

    def after_backward(self, ctx, batch) -> None:
        if self.n_stored == 0:
            return
        params = self.trainable(ctx)
        g = flat_grad(params)
        g_ref = self.memory_grad(ctx, params, self.reference_batch(ctx, ctx.cfg.batch_size))
        write_grad(params, project(g, g_ref))

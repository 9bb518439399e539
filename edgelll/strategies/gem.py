"""Gradient Episodic Memory (Lopez-Paz & Ranzato 2017, arXiv:1706.08840).

Each finished experience k leaves an episodic memory M_k (a uniform random subset of its data).
At every step, with g the gradient of the training loss and g_k the gradient of the loss on M_k,
GEM asks that no past loss increases to first order, <g~, g_k> >= 0 for every k, taking the g~
closest to g in L2: min 1/2 ||g - g~||^2 s.t. G g~ >= 0 (section 3). When some <g, g_k> < 0 it
solves that projection's dual (section 3), with G the matrix whose rows are the g_k:

    min_v 1/2 v^T G G^T v + g^T G^T v   subject to   v >= gamma,      then   g~ = G^T v + g.

gamma = 0 is the exact projection. The paper's margin gamma > 0 ("adding a small constant to v*
biased the projection towards backward transfer", section 3) is implemented as the authors' code
does it (``project2cone2``: quadprog with h = margin, i.e. the bound v >= gamma): with
v = u + gamma 1 and Q = G G^T it becomes min_{u >= 0} 1/2 u^T Q u + (G g + gamma Q 1)^T u, solved by
:func:`edgelll.qp.nonneg_qp`. Unlike the authors' code, no eps I is added to Q: the active-set
solver handles a singular G G^T (parallel memory gradients) as it is. The g_k are recomputed at
every step, one forward/backward per past experience on its whole memory, with the current
parameters; nothing per step is kept besides the memory itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..qp import nonneg_qp
from ._episodic import EpisodicStrategy, check_counts, flat_grad, write_grad


@dataclass(frozen=True)
class GEMParams:
    per_experience: int = field(default=256, metadata={
        "help": "exemplars kept per experience (the paper: 256 per task)", "resolved": "fitted"})
    size: int | None = field(default=None, metadata={
        "help": "total, split equally; None: fit --memory, else per_experience"})
    margin: float = field(default=0.5, metadata={
        "help": "gamma, the lower bound on the dual variables (authors' code: 0.5)"})

    def __post_init__(self) -> None:
        check_counts("gem", self.per_experience, self.size)
        if not self.margin >= 0:
            raise ConfigError(f"gem.margin must be >= 0 (0: the exact projection), "
                              f"got {self.margin}")


def project(g: torch.Tensor, G: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """GEM's projected gradient for flat ``g`` and memory gradients ``G`` (one per row)."""
    Q = (G @ G.T).double().cpu()
    p = (G @ g).double().cpu()
    if margin:
        p = p + margin * Q.sum(1)  # Q @ (margin * 1)
    v = nonneg_qp(Q, p) + margin
    return g + G.T @ v.to(G.device, G.dtype)


class GEM(EpisodicStrategy):
    name = "gem"
    description = "gradient episodic memory: project the gradient so no past loss increases"
    Params = GEMParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.projections = 0  # steps whose gradient was projected (reported in metrics.json)
        self.steps = 0  # steps with a memory to check against

    def extra_rows(self, batch_size: int) -> int:
        # One experience's memory is forwarded at a time, after the batch's graph is freed: the
        # peak activations are those of the larger of the two.
        rows = self.params.size if self.params.size is not None else self.params.per_experience
        return max(0, rows - batch_size)

    def step_flops(self, ctx, batch, forward_flops: int) -> int:
        # A forward and backward pass (3 forwards) over every stored experience's memory.
        return 3 * forward_flops * self.bounds[-1] if self.n_stored else 0

    def memory_grads(self, ctx, params: list[torch.Tensor], numel: int) -> torch.Tensor:
        """G: row k is the loss gradient on experience k's memory (a loop over experiences)."""
        G = torch.empty(self.n_stored, numel, device=params[0].device, dtype=params[0].dtype)
        for k in range(self.n_stored):
            self.memory_grad(ctx, params, self.experience_memory(k), out=G[k])
        return G

    def after_backward(self, ctx, batch) -> None:
        if self.n_stored == 0:
            return
        params = self.trainable(ctx)
        g = flat_grad(params)
        G = self.memory_grads(ctx, params, g.numel())
        self.steps += 1
        if not bool((G @ g < 0).any()):
            return  # no past loss increases: the gradient is left exactly as it is
        write_grad(params, project(g, G, self.params.margin))
        self.projections += 1

    def report(self) -> dict:
        if not self.steps:
            return {}
        return {"projected_steps": self.projections, "steps_with_memory": self.steps}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "projections": self.projections, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.projections, self.steps = int(state["projections"]), int(state["steps"])

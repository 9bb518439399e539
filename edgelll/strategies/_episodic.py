"""What GEM and A-GEM share: a per-experience episodic memory and flat gradient vectors.

The memory keeps, for every finished experience, a uniform random subset of its training data
(drawn with the run's generator, so resume is bit-exact). With ``per_experience`` (or a size fitted
to ``--memory``) each experience keeps that many; with ``size`` the total is shared equally among
the experiences seen so far, so earlier memories start larger and shrink to a prefix of
themselves (still a uniform subset) as experiences arrive, as in Hsu et al.'s GEM (their memory
of ``memory_size // tasks_seen`` per task). Samples are stored in the source dtype (uint8 stays
uint8) with int16 labels and task ids, all experiences in one tensor with their boundaries: experience
k's memory is the view ``x[bounds[k]:bounds[k + 1]]``. Gradients are handled as one flat vector
over the trainable parameters, in ``model.parameters()`` order.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..buffer import ExemplarBuffer
from ..errors import BudgetError, ConfigError
from .base import Batch, Plan, Strategy


def flat_grad(params: list[torch.Tensor]) -> torch.Tensor:
    """Every parameter's ``.grad`` as one vector (zeros where a parameter has none)."""
    return torch.cat([p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel())
                      for p in params])


def write_grad(params: list[torch.Tensor], vec: torch.Tensor) -> None:
    """Write a flat gradient back into ``.grad``; a parameter without one gets one only if its
    part of ``vec`` is non-zero (Adam treats a zero gradient and no gradient differently)."""
    for p, part in zip(params, vec.split([p.numel() for p in params])):
        part = part.view_as(p)
        if p.grad is not None:
            p.grad.copy_(part)
        elif bool(part.any()):
            p.grad = part.clone()


class EpisodicStrategy(Strategy):
    """Base of GEM and A-GEM (no ``name``: not a strategy of its own). Its ``Params`` must have
    ``per_experience`` and ``size`` (total exemplars, split equally over the experiences)."""

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.fitted: int | None = None  # per-experience count chosen by fit_budget
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.t: torch.Tensor | None = None
        self.bounds: list[int] = [0]
        self._cache: tuple | None = None

    # -- how many exemplars per experience -----------------------------------------------------
    @property
    def shared(self) -> bool:
        """True when ``size`` is shared among the experiences seen so far."""
        return self.fitted is None and self.params.size is not None

    def per_experience(self, n_experiences: int) -> int:
        """Exemplars per experience once ``n_experiences`` have been seen (``size`` shared) or
        always (``per_experience`` or fitted)."""
        if self.fitted is not None:
            return self.fitted
        if self.params.size is None:
            return self.params.per_experience
        per = self.params.size // max(1, n_experiences)
        if per < 1:
            raise ConfigError(f"{self.name}.size={self.params.size} is fewer exemplars than the "
                              f"{n_experiences} experiences; raise it to at least {n_experiences}")
        return per

    def sized_by_budget(self) -> bool:
        return self.params.size is None

    def fit_budget(self, plan: Plan, bytes_left: int) -> None:
        cost = plan.n_experiences * (plan.sample_bytes + ExemplarBuffer.LABEL_BYTES)
        per = bytes_left // max(1, cost)
        if per < 1:
            raise BudgetError(f"the memory budget leaves {bytes_left} B for {self.name}'s episodic "
                              f"memory, less than one exemplar per experience ({cost} B); raise "
                              f"--memory or set {self.name}.size")
        if plan.train_bytes and plan.sample_bytes:  # more than an experience holds is no use
            per = min(per, max(plan.train_bytes) // plan.sample_bytes)
        self.fitted = int(per)

    def planned_bytes(self, plan: Plan) -> int:
        n_exp = plan.n_experiences
        fixed = self.per_experience(n_exp)  # also refuses a size below one per experience
        known = plan.train_bytes and plan.sample_bytes
        caps = [b // plan.sample_bytes for b in plan.train_bytes] if known else [None] * n_exp

        def held(k: int) -> int:  # rows stored once experiences 0..k are done
            per = self.per_experience(k + 1) if self.shared else fixed
            return sum(per if cap is None else min(per, cap) for cap in caps[: k + 1])

        rows = max((held(k) for k in range(len(caps))), default=0)  # shared: the peak is early
        return rows * (plan.sample_bytes + ExemplarBuffer.LABEL_BYTES)

    # -- the memory ---------------------------------------------------------------------------
    @property
    def n_stored(self) -> int:
        return len(self.bounds) - 1

    def after_experience(self, ctx, exp, data: Batch) -> None:
        if self.shared:  # make room: every older memory shrinks to a prefix of itself
            per = self.per_experience(exp.index + 1)
            self._shrink(per)
        else:
            per = self.per_experience(len(ctx.stream))
        n = min(per, len(data))
        idx = torch.randperm(len(data), generator=ctx.generator)[:n].to(data.y.device)
        if n == 0:
            return  # nothing to remember (and an empty memory has no loss to constrain)
        x, y, t = data.x[idx], data.y[idx].to(torch.int16), data.t[idx].to(torch.int16)
        if self.x is not None:
            x, y, t = torch.cat([self.x, x]), torch.cat([self.y, y]), torch.cat([self.t, t])
        self.x, self.y, self.t = x, y, t
        self.bounds.append(self.bounds[-1] + n)

    def _shrink(self, per: int) -> None:
        spans = list(zip(self.bounds, self.bounds[1:]))
        if self.x is None or all(b - a <= per for a, b in spans):
            return
        idx = torch.cat([torch.arange(a, min(b, a + per)) for a, b in spans]).to(self.x.device)
        self.x, self.y, self.t = self.x[idx], self.y[idx], self.t[idx]
        self.bounds = [0]
        for a, b in spans:
            self.bounds.append(self.bounds[-1] + min(b - a, per))

    def experience_memory(self, k: int) -> Batch:
        sl = slice(self.bounds[k], self.bounds[k + 1])
        return Batch(self.x[sl], self.y[sl], self.t[sl])

    # -- gradients ----------------------------------------------------------------------------
    def trainable(self, ctx) -> list[torch.Tensor]:
        """The trainable parameters, found once per experience (the model changes only between)."""
        key = (ctx.experience, id(ctx.model))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, [p for p in ctx.model.parameters() if p.requires_grad])
        return self._cache[1]

    def memory_grad(self, ctx, params: list[torch.Tensor], mem: Batch,
                    out: torch.Tensor | None = None) -> torch.Tensor:
        """The flat gradient of the mean loss on ``mem``, with the learner's conventions (input
        normalisation, task ids only when the scenario gives them, autocast); leaves ``.grad``."""
        t = mem.t.long()
        amp = ctx.cfg.amp
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16) if amp else nullcontext():
            logits = ctx.model(mem.x, t)
            loss = F.cross_entropy(logits.float(), mem.y.long())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        parts = [g.reshape(-1) if g is not None else p.new_zeros(p.numel())
                 for g, p in zip(grads, params)]
        return torch.cat(parts, out=out) if out is not None else torch.cat(parts)

    # -- state --------------------------------------------------------------------------------
    def tensors(self) -> list[torch.Tensor]:
        return [self.x, self.y, self.t] if self.x is not None else []

    def state_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "t": self.t, "bounds": list(self.bounds),
                "fitted": self.fitted}

    def load_state_dict(self, state: dict) -> None:
        self.x, self.y, self.t = state["x"], state["y"], state["t"]
        self.bounds = [int(b) for b in state["bounds"]]
        self.fitted = None if state["fitted"] is None else int(state["fitted"])
        self._cache = None


def check_counts(name: str, per_experience: int, size: int | None) -> None:
    """The ConfigErrors both strategies share: a memory of at least one exemplar."""
    if size is not None and size < 1:
        raise ConfigError(f"{name} with no memory (size={size}) cannot constrain anything; set "
                          f"{name}.size to at least the number of experiences, or use naive")
    if per_experience < 1:
        raise ConfigError(f"{name}.per_experience must be at least 1, got {per_experience} "
                          f"({name} with no memory cannot constrain anything)")

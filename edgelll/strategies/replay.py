"""Experience replay from a bounded exemplar memory.

Exemplars are chosen by reservoir sampling over the stream (Vitter 1985, Algorithm R: every
sample seen so far is in the buffer with equal probability), class-balanced (an equal share per
class seen, at random), or class-balanced by herding (Rebuffi et al. 2017, iCaRL,
arXiv:1611.07725, Algorithm 4: the exemplars whose running mean best approximates the class mean
in the current model's ``forward_features`` space; old classes shrink to the first k of their
herding order). Each training batch is extended with ``batch_size`` exemplars drawn uniformly, as
in experience replay (Chaudhry et al. 2019, arXiv:1902.10486). Exemplars keep their source dtype,
so a uint8 image costs a quarter of its float32 copy; with ``--memory`` and no explicit ``size``
the buffer takes every byte the fixed parts leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..buffer import ExemplarBuffer
from ..errors import BudgetError, ConfigError
from .base import Batch, Plan, Strategy

POLICIES = ("reservoir", "balanced", "herding")


@torch.no_grad()
def embed(model: torch.nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Features ``model.forward_features(x)`` of stored samples, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.forward_features(x[i:i + chunk]).float().flatten(1)
                          for i in range(0, x.shape[0], chunk)])
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class ReplayParams:
    size: int | None = field(default=None, metadata={
        "help": "exemplars; None: fill the memory budget (200 without one)",
        "resolved": "capacity"})
    batch_size: int | None = field(default=None, metadata={
        "help": "exemplars per step; None: the training batch size", "resolved": "cfg.batch_size"})
    policy: str = field(default="reservoir", metadata={"help": "reservoir | balanced | herding"})

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise ConfigError(f"replay.size must be at least 1, got {self.size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"replay.batch_size must be at least 1, got {self.batch_size}")
        if self.policy not in POLICIES:
            raise ConfigError(f"replay.policy must be reservoir, balanced or herding, "
                              f"got {self.policy!r}")


DEFAULT_SIZE = 200


class Replay(Strategy):
    name = "replay"
    description = "rehearse an exemplar buffer: reservoir, class-balanced or herding selection"
    Params = ReplayParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.capacity = self.params.size or DEFAULT_SIZE
        self.buffer: ExemplarBuffer | None = None

    def _rows(self, batch_size: int) -> int:
        return self.params.batch_size or batch_size

    def extra_rows(self, batch_size: int) -> int:
        return self._rows(batch_size)

    def planned_bytes(self, plan: Plan) -> int:
        return self.capacity * (plan.sample_bytes + ExemplarBuffer.LABEL_BYTES)

    def sized_by_budget(self) -> bool:
        return self.params.size is None

    def fit_budget(self, plan: Plan, bytes_left: int) -> None:
        per = plan.sample_bytes + ExemplarBuffer.LABEL_BYTES
        if self.params.size is None:
            self.capacity = bytes_left // per
            if self.capacity < 1:
                raise BudgetError(f"the memory budget leaves {bytes_left} B for replay, less than "
                                  f"one exemplar ({per} B); raise --memory or drop replay")

    def _ensure(self, ctx) -> ExemplarBuffer:
        if self.buffer is None:
            s = ctx.stream
            self.buffer = ExemplarBuffer(self.capacity, s.input_shape, s.dtype, ctx.device)
        return self.buffer

    def before_experience(self, ctx, exp) -> None:
        self._ensure(ctx)

    def mix_batch(self, ctx, batch: Batch) -> Batch:
        buf = self.buffer
        if buf is None or buf.size == 0:
            return batch
        return batch.cat(buf.sample(self._rows(len(batch)), ctx.generator))

    def after_experience(self, ctx, exp, data: Batch) -> None:
        buf = self._ensure(ctx)
        if self.params.policy == "herding":  # deterministic: no stream order needed
            buf.herding_update(data, lambda x: embed(ctx.model, x))
            return
        # The order the stream presented the samples in: a random permutation of the experience.
        order = torch.randperm(len(data), generator=ctx.generator).to(data.y.device)
        shuffled = Batch(data.x[order], data.y[order], data.t[order])
        if self.params.policy == "balanced":
            buf.balanced_update(shuffled, ctx.generator)
        else:
            buf.reservoir_update(shuffled, ctx.generator)

    def tensors(self) -> list[torch.Tensor]:
        return self.buffer.tensors() if self.buffer is not None else []

    def state_dict(self) -> dict:
        return {"capacity": self.capacity,
                "buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.capacity = int(state["capacity"])
        if state["buffer"] is not None:
            ref = state["buffer"]["x"]
            self.buffer = ExemplarBuffer(self.capacity, tuple(ref.shape[1:]), ref.dtype, ref.device)
            self.buffer.load_state_dict(state["buffer"])

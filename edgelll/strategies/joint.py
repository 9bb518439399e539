"""Joint (multi-task) training: every experience trains on the union of all data seen so far.

The upper bound of the lecture outline ("train on all the data": it solves forgetting at the price
of storing every sample and re-training on all of it). The stored past data is counted in the
memory report, so the price is visible.
"""

from __future__ import annotations

import torch

from .base import Batch, Plan, Strategy


class Joint(Strategy):
    name = "joint"
    description = "train on the union of all experiences so far (upper bound; stores all data)"

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self._past_bytes = 0

    def training_data(self, ctx, exp, data: Batch) -> Batch:
        past = [e.train_data() for e in ctx.stream.experiences[: exp.index]]
        self._past_bytes = sum(b.x.nbytes + b.y.nbytes + b.t.nbytes for b in past)
        if not past:
            return data
        return Batch(torch.cat([b.x for b in past] + [data.x]),
                     torch.cat([b.y for b in past] + [data.y]),
                     torch.cat([b.t for b in past] + [data.t]))

    def memory_bytes(self) -> int:
        return self._past_bytes

    def planned_bytes(self, plan: Plan) -> int:
        return sum(plan.train_bytes[:-1])  # all but the last experience's data is kept

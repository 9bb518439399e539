"""The unit of data that flows through the learner: inputs, labels and task ids together."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    """A training batch: inputs in their storage dtype, labels, and task ids (all on device)."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor

    def cat(self, other: Batch) -> Batch:
        x = other.x if other.x.dtype == self.x.dtype else other.x.to(self.x.dtype)
        return Batch(torch.cat([self.x, x]), torch.cat([self.y, other.y.long()]),
                     torch.cat([self.t, other.t.long()]))

    def __len__(self) -> int:
        return self.y.shape[0]

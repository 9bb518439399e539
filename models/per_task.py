"""One model per task: the "independent" baseline of the lecture outline.

Knowledge does not transfer between tasks and the stored models add up, which the memory report
shows. Each member is an ordinary :class:`EdgeModel` whose head covers its own task's classes.
Routing uses tensor operations over the batch, one pass per member, never a loop over samples.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import EdgeModel
from .registry import register_wrapper, rebuild


class ModelPerTask(nn.Module):
    name = "per-task"

    def __init__(self, members: list[EdgeModel], route: str) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.route = route  # "task": by task id; "class": member logits side by side
        for old in self.members[:-1]:  # only the newest member learns
            old.requires_grad_(False)

    def arch(self) -> dict:
        return {"name": self.name, "route": self.route, "members": [m.arch() for m in self.members]}

    def adapt(self, exp) -> bool:
        if exp.task_id < len(self.members):
            return False
        first = self.members[0]
        arch = first.arch()
        arch["head"] = {"kind": "single", "sizes": [exp.n_local_classes]}
        member = rebuild(arch, first.input_shape)
        ref = next(first.parameters())
        self.members.append(member.to(ref.device, ref.dtype))
        for old in self.members[:-1]:
            old.requires_grad_(False)
        return True

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        outs = [m(x) for m in self.members]
        if self.route == "class":
            # Members' classes are consecutive blocks of the global label space.
            return torch.cat(outs, dim=1)
        if task_ids is None:
            raise ValueError("routing by task needs the task id of every sample")
        width = max(o.shape[1] for o in outs)
        padded = [torch.nn.functional.pad(o, (0, width - o.shape[1]), value=float("-inf"))
                  for o in outs]
        stacked = torch.stack(padded)
        index = task_ids.clamp(max=len(outs) - 1).view(1, -1, 1).expand(1, -1, width)
        logits = stacked.gather(0, index).squeeze(0)
        return logits.masked_fill((task_ids >= len(outs)).view(-1, 1), float("-inf"))


@register_wrapper(ModelPerTask.name)
def _rebuild(arch: dict, input_shape: tuple[int, ...]) -> ModelPerTask:
    return ModelPerTask([rebuild(m, input_shape) for m in arch["members"]], arch["route"])

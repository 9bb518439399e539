"""Learning without Forgetting (Li & Hoiem 2016, arXiv:1606.09282).

After each experience a frozen copy of the model is kept. While later experiences are learnt, the
old model's responses to the *current* inputs are the targets of a distillation term (the paper's
equation for L_old with the temperature T = 2 of its section 3, here in Hinton's T^2-scaled form,
:func:`edgelll.kd.kd_loss`):

    L = CE(y, f(x)) + alpha * sum_o L_kd(f_o(x), f*_o(x); T)

over the old model's output units o:

- class scenario: the first ``n_old`` logits (the classes the old model knew);
- domain scenario: all units of the shared head the old model had;
- task scenario: every old task's head, each evaluated on every input of the batch (the paper's
  multi-head LwF; the batch's own task ids pick the head only for the cross-entropy the learner
  adds), one distillation term per old head, summed.

``pad=True`` (class scenario) distils over every current unit instead of the old ones alone, the
units the old model lacks getting target probability 0, as van de Ven & Tolias's class-incremental
LwF does; it also pulls the new classes' logits down on the new data.

``balance=True`` weighs the terms as van de Ven & Tolias (2019) do, by the number t of experiences
seen: L = (1/t) CE + (1 - 1/t) alpha L_kd. It is implemented as CE + (t - 1) alpha L_kd, the same
loss times t, which Adam's update does not see (SGD sees it as a learning rate t times larger).

Only the latest copy is kept (it already learnt to imitate the earlier ones), so the state is at
most one model: the final model's parameter bytes bound it. Composes with replay (the replayed
rows are distilled too) and with bic (put ``lwf`` after ``bic`` to distill from the bias-corrected
model, as in BiC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..kd import (frozen_copy, kd_loss, model_state, model_tensors, load_model_state,
                  widen_teacher)
from ..models import MultiHeadClassifier
from .base import Plan, Strategy


@dataclass(frozen=True)
class LwFParams:
    alpha: float = field(default=1.0, metadata={"help": "weight of the distillation term"})
    T: float = field(default=2.0, metadata={"help": "distillation temperature"})
    balance: bool = field(default=False, metadata={
        "help": "weigh old against new by the experiences seen (van de Ven & Tolias)"})
    pad: bool = field(default=False, metadata={
        "help": "class scenario: distil over every unit, new classes' targets at 0"})

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise ConfigError(f"lwf.alpha must be >= 0, got {self.alpha}; e.g. --set lwf.alpha=1")
        if not self.T > 0:
            raise ConfigError(f"lwf.T must be > 0, got {self.T}; e.g. --set lwf.T=2")


def _shared_heads(model: nn.Module) -> MultiHeadClassifier | None:
    """The per-task heads over one shared backbone, if the model has them at the top."""
    head = model.head
    return head if head.kind == MultiHeadClassifier.kind else None


def task_head_logits(model: nn.Module, x: torch.Tensor, n_tasks: int) -> list[torch.Tensor]:
    """Every input through each of the first ``n_tasks`` heads of a model routed by task."""
    heads = _shared_heads(model)
    if heads is not None:
        feats = model.forward_features(x)  # one backbone pass shared by every head
        return [heads.heads[j](feats) for j in range(n_tasks)]
    n = x.shape[0]  # columns or a wrapped head: one forward per old task
    return [model(x, torch.full((n,), j, dtype=torch.long, device=x.device)) for j in range(n_tasks)]


class LwF(Strategy):
    name = "lwf"
    description = "learning without forgetting: distill the previous model on the new inputs"
    Params = LwFParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.old: nn.Module | None = None  # frozen model as it was after the last experience
        self.old_tasks = 0  # task ids the old model has heads for (task scenario)

    def extra_loss(self, ctx, batch, logits):
        if self.old is None or self.params.alpha == 0:
            return None
        T, x = self.params.T, batch.x
        if ctx.model.routes_by_task:
            with torch.no_grad():
                targets = task_head_logits(self.old, x, self.old_tasks)
            outputs = task_head_logits(ctx.model, x, self.old_tasks)
            kd = sum(kd_loss(s, t, T) for s, t in zip(outputs, targets))
        else:
            with torch.no_grad():
                target = self.old(x, batch.t)
            if self.params.pad:
                kd = kd_loss(logits, widen_teacher(target, logits.shape[1]), T)
            else:
                kd = kd_loss(logits[:, : target.shape[1]], target, T)
        return self.weight(ctx) * kd

    def weight(self, ctx) -> float:
        """alpha, times t - 1 (the old experiences, t counting the current one) with balance."""
        return self.params.alpha * (ctx.experience if self.params.balance else 1)

    def step_flops(self, ctx, batch, forward_flops: int) -> int:
        # The previous model's forward pass over the batch (its size is the current model's or
        # less; in the task scenario a model without a shared backbone runs once per old task).
        if self.old is None or self.params.alpha == 0:
            return 0
        shared = _shared_heads(self.old) is not None
        passes = self.old_tasks if self.old.routes_by_task and not shared else 1
        return passes * forward_flops * len(batch)

    def after_experience(self, ctx, exp, data) -> None:
        self.old = frozen_copy(ctx.model)
        self.old_tasks = max(self.old_tasks, exp.task_id + 1)

    def tensors(self) -> list[torch.Tensor]:
        return model_tensors(self.old)

    def planned_bytes(self, plan: Plan) -> int:
        return plan.model_bytes  # one copy, never larger than the final model

    def state_dict(self) -> dict:
        return {"old": model_state(self.old), "old_tasks": self.old_tasks}

    def load_state_dict(self, state: dict) -> None:
        self.old_tasks = int(state["old_tasks"])
        self.old = load_model_state(state["old"])

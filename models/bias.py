"""The bias-correction layer of BiC (Wu et al. 2019, Large Scale Incremental Learning,
arXiv:1905.13260, equation 4): two scalars applied to the logits of the newest classes only,

    q_k = alpha * o_k + beta   for the new classes k >= new_from,
    q_k = o_k                  for the old classes.

Only the newest experience's pair is active. When the layer is re-pointed at a later experience's
classes, the old pair is folded into the inner model's head rows of the classes it corrected
(W <- alpha W, b <- alpha b + beta: the same function) and reset to (1, 0), so a correction once
learnt is kept while a fresh pair learns the next one. ``alpha`` and ``beta`` never receive
gradients from ordinary training (``requires_grad`` is False); BiC's stage 2 trains them alone.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import IncrementalClassifier
from .registry import rebuild, register_wrapper


class BiasCorrection(nn.Module):
    name = "bias-correction"

    def __init__(self, inner: nn.Module, new_from: int) -> None:
        super().__init__()
        self.inner = inner
        self.new_from = int(new_from)
        ref = next(inner.parameters())
        self.alpha = nn.Parameter(torch.ones((), device=ref.device, dtype=ref.dtype),
                                  requires_grad=False)
        self.beta = nn.Parameter(torch.zeros((), device=ref.device, dtype=ref.dtype),
                                 requires_grad=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inner.input_shape

    def arch(self) -> dict:
        return {"name": self.name, "inner": self.inner.arch(), "new_from": self.new_from}

    def adapt(self, exp) -> bool:
        return self.inner.adapt(exp)

    def correct(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the pair to ``logits`` of the inner model (old units are passed through as is)."""
        old, new = logits[:, : self.new_from], logits[:, self.new_from:]
        return torch.cat([old, new * self.alpha + self.beta], dim=1)

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.correct(self.inner(x, task_ids))

    @torch.no_grad()
    def repoint(self, new_from: int) -> None:
        """Fold the active pair into the inner head, reset it to (1, 0), point it at ``new_from``."""
        head = getattr(self.inner, "head", None)
        if not isinstance(head, IncrementalClassifier):
            raise TypeError("bias correction folds into a single growing head (class scenario)")
        w, b = head.linear.weight[self.new_from:], head.linear.bias[self.new_from:]
        w.mul_(self.alpha)
        b.mul_(self.alpha).add_(self.beta)
        self.alpha.fill_(1.0)
        self.beta.fill_(0.0)
        self.new_from = int(new_from)


@register_wrapper(BiasCorrection.name)
def _rebuild(arch: dict, input_shape: tuple[int, ...]) -> BiasCorrection:
    return BiasCorrection(rebuild(arch["inner"], input_shape), int(arch["new_from"]))

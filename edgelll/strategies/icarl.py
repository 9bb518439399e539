"""iCaRL: incremental classifier and representation learning (Rebuffi et al. 2017,
arXiv:1611.07725), for the class-incremental scenario.

- Exemplars (Algorithms 4 and 5): a memory of K samples, an equal share m = K / classes per class,
  chosen by herding in the current feature space (each class's exemplars are those whose running
  mean best approximates its mean) and shrunk by keeping the first m of each herding order. They
  are mixed into every training batch (rehearsal); see :func:`edgelll.buffer.herding_select`.
- Distillation (Algorithm 3): on every row of the batch, for the s old classes,

      L_distill(x) = - sum_{y < s} [ q_y log g_y(x) + (1 - q_y) log(1 - g_y(x)) ],
      q_y = sigmoid(old model's logit y / T),  g_y = sigmoid(current logit y),

  the binary cross-entropy against the previous model's sigmoid outputs, weighted by ``lam`` and
  averaged over rows. With ``bce=True`` (the paper's loss, the default) the new classes' units get
  the binary cross-entropy against the one-hot labels too, summed with the distillation over
  every unit, and this replaces the learner's softmax cross-entropy (``task_loss``). With
  ``bce=False`` the learner's softmax cross-entropy on the labels stands in for the new classes'
  part. The previous model is kept frozen ({"arch", "state"}).
- Nearest-mean-of-exemplars classification (Algorithm 1, ``nmc=True``): after each experience
  mu_y = mean of the L2-normalised features of class y's exemplars, re-normalised (the paper
  re-normalises every average of features), and y*(x) = argmin_y || phi(x) - mu_y ||. The means
  live in a nearest-mean head variant (``edgelll.models.NearestMeanHead``, cosine, set from the
  exemplars rather than online) whose buffers checkpoints carry; in training mode it returns the
  logits of the head below it, in eval mode -distance, so the learner's argmax is the nearest
  mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..buffer import ExemplarBuffer
from ..errors import BudgetError, ConfigError
from ..kd import frozen_copy, load_model_state, model_state, model_tensors
from ..models import NearestMeanHead
from .base import Batch, Plan, Strategy
from .replay import DEFAULT_SIZE, embed


@dataclass(frozen=True)
class ICaRLParams:
    size: int | None = field(default=None, metadata={
        "help": "exemplars; None: fill the memory budget (200 without one)",
        "resolved": "capacity"})
    batch_size: int | None = field(default=None, metadata={
        "help": "exemplars per step; None: the training batch size", "resolved": "cfg.batch_size"})
    lam: float = field(default=1.0, metadata={"help": "weight of the distillation term"})
    nmc: bool = field(default=True, metadata={
        "help": "classify by nearest mean of exemplars (False: the network's head)"})
    bce: bool = field(default=True, metadata={
        "help": "the paper's sigmoid BCE on every unit (False: softmax CE + distillation)"})
    T: float = field(default=1.0, metadata={
        "help": "targets sigmoid(old logit / T): 1 in the paper, 2 in van de Ven & Tolias's code"})

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise ConfigError(f"icarl.size must be at least 1, got {self.size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"icarl.batch_size must be at least 1, got {self.batch_size}")
        if not self.lam >= 0:
            raise ConfigError(f"icarl.lam must be >= 0, got {self.lam}")
        if not self.T > 0:
            raise ConfigError(f"icarl.T must be > 0, got {self.T}; e.g. --set icarl.T=1")


class ICaRL(Strategy):
    name = "icarl"
    description = "iCaRL: herding exemplars, sigmoid distillation, nearest-mean-of-exemplars"
    Params = ICaRLParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.capacity = self.params.size or DEFAULT_SIZE
        self.buffer: ExemplarBuffer | None = None
        self.old: nn.Module | None = None  # the frozen model of the previous experience

    def extra_rows(self, batch_size: int) -> int:
        return self.params.batch_size or batch_size

    def planned_bytes(self, plan: Plan) -> int:
        return self.capacity * (plan.sample_bytes + ExemplarBuffer.LABEL_BYTES) + plan.model_bytes

    def sized_by_budget(self) -> bool:
        return self.params.size is None

    def fit_budget(self, plan: Plan, bytes_left: int) -> None:
        per = plan.sample_bytes + ExemplarBuffer.LABEL_BYTES
        self.capacity = (bytes_left - plan.model_bytes) // per
        if self.capacity < 1:
            raise BudgetError(f"the memory budget leaves {bytes_left} B for icarl, less than its "
                              f"previous model and one exemplar ({plan.model_bytes + per} B); "
                              f"raise the memory budget")

    def setup(self, ctx) -> None:
        if ctx.stream.scenario != "class":
            raise ConfigError(f"icarl works in the class scenario only, not "
                              f"{ctx.stream.scenario!r}; use --scenario class or another strategy")
        for other in ("independent", "ncm"):
            if other in ctx.cfg.strategies:
                raise ConfigError(f"icarl classifies by class means in one shared feature space, "
                                  f"which {other} replaces; drop one of icarl and {other}")

    def adapt_model(self, ctx, model, exp):
        if self.params.nmc and model.head.find(NearestMeanHead.kind) is None:
            model.wrap_head(lambda head: NearestMeanHead(head, model.feat_dim, cosine=True))
        return model

    def before_experience(self, ctx, exp) -> None:
        if self.buffer is None:
            s = ctx.stream
            self.buffer = ExemplarBuffer(self.capacity, s.input_shape, s.dtype, ctx.device)

    def mix_batch(self, ctx, batch: Batch) -> Batch:
        if self.buffer is None or self.buffer.size == 0:
            return batch
        return batch.cat(self.buffer.sample(self.extra_rows(len(batch)), ctx.generator))

    def _old_targets(self, x: torch.Tensor) -> torch.Tensor | None:
        """q = sigmoid(old logits / T), one column per class the previous model knew."""
        if self.old is None:
            return None
        with torch.no_grad():
            return torch.sigmoid(self.old.logits(x).float() / self.params.T)

    def _distillation(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(z[:, : q.shape[1]], q, reduction="sum")
        return self.params.lam * bce / z.shape[0]

    def replaces_loss(self) -> bool:
        return self.params.bce

    def task_loss(self, ctx, batch, logits):
        # The paper's loss: BCE against the one-hot label on the new classes' units, plus the
        # distillation on the old ones.
        z, q = logits.float(), self._old_targets(batch.x)
        n_old = 0 if q is None else q.shape[1]
        onehot = F.one_hot(batch.y.long(), z.shape[1])[:, n_old:].to(z.dtype)
        loss = F.binary_cross_entropy_with_logits(z[:, n_old:], onehot, reduction="sum") / len(z)
        return loss if q is None or self.params.lam == 0 else loss + self._distillation(z, q)

    def extra_loss(self, ctx, batch, logits):
        if self.params.bce or self.old is None or self.params.lam == 0:
            return None  # with bce the distillation is part of task_loss
        return self._distillation(logits.float(), self._old_targets(batch.x))

    def after_experience(self, ctx, exp, data: Batch) -> None:
        model, buf = ctx.model, self.buffer
        buf.herding_update(data, lambda x: embed(model, x))
        nme = model.head.find(NearestMeanHead.kind)
        if nme is not None:
            nme.set_stats(embed(model, buf.x[: buf.size]), buf.y[: buf.size])
        self.old = frozen_copy(model)

    def tensors(self) -> list[torch.Tensor]:
        return (self.buffer.tensors() if self.buffer is not None else []) + model_tensors(self.old)

    def state_dict(self) -> dict:
        return {"capacity": self.capacity,
                "buffer": self.buffer.state_dict() if self.buffer is not None else None,
                "old": model_state(self.old)}

    def load_state_dict(self, state: dict) -> None:
        self.capacity = int(state["capacity"])
        if state["buffer"] is not None:
            ref = state["buffer"]["x"]
            self.buffer = ExemplarBuffer(self.capacity, tuple(ref.shape[1:]), ref.dtype, ref.device)
            self.buffer.load_state_dict(state["buffer"])
        self.old = load_model_state(state["old"])

"""Bias Correction, BiC (Wu et al. 2019, Large Scale Incremental Learning, arXiv:1905.13260).

A class-incremental learner trained on few old exemplars and many new samples favours the new
classes. BiC corrects this in two stages per experience:

1. Training as usual on the experience minus a held-out validation split. Compose with ``replay``
   for the exemplars and, for the paper's distillation term, with ``lwf`` (put ``lwf`` after
   ``bic`` so that it distills from the bias-corrected old model, as the paper does; lwf weighs the
   term by its fixed ``alpha`` rather than the paper's n_old / (n_old + n_new)).
2. From the second experience on, a bias layer with two parameters (equation 4),

       q_k = alpha * o_k + beta  for the newest experience's classes,  q_k = o_k  for the others,

   is fitted by cross-entropy on a class-balanced validation set with everything else frozen
   (the logits o are computed once; only alpha and beta learn).

The validation set: :meth:`BiC.holdout` removes ``val_per_class`` samples of every new class
from the experience's training data (seeded by the run's generator; a class keeps at least one
training sample) and stores them for the rest of the stream, so every class seen has its share.
These stored samples count in the memory report. Held-out rows never reach training, and never
reach another strategy's ``after_experience`` either, so ``replay`` cannot store one as an
exemplar.

The bias layer is :class:`edgelll.models.bias.BiasCorrection`, installed by :meth:`adapt_model` from
the second experience and re-pointed at each new experience's classes; only the newest pair is
active, as in the paper. The previous pair is not thrown away: it is folded into the head rows of
the classes it corrected (an exact rewrite of the same function) and reset to (1, 0). Class
scenario only: with task ids or a shared domain head there is no old/new class imbalance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..batch import Batch
from ..errors import ConfigError
from ..models.bias import BiasCorrection
from ..optim import SGD, Adam  # torch.optim would import torch._dynamo (about 1 s)
from .base import Plan, Strategy

LABEL_BYTES = 4  # int16 label + int16 task id per stored validation sample


@dataclass(frozen=True)
class BiCParams:
    val_per_class: int = 10  # validation samples held out and stored per class
    epochs: int = 50  # stage-2 passes over the validation set
    lr: float = 0.01  # stage-2 learning rate
    optimizer: str = "adam"  # adam | sgd (stage 2)

    def __post_init__(self) -> None:
        if self.val_per_class < 1:
            raise ConfigError(f"bic.val_per_class must be at least 1, got {self.val_per_class}")
        if self.epochs < 1:
            raise ConfigError(f"bic.epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"bic.lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"bic.optimizer must be adam or sgd, got {self.optimizer!r}")


class BiC(Strategy):
    name = "bic"
    description = "bias correction: a 2-parameter layer on the new classes' logits (class scenario)"
    Params = BiCParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.val: Batch | None = None  # stored validation samples (storage dtype, int16 labels)
        self.pairs: list[list[float]] = []  # (alpha, beta) fitted after each experience
        self._classes = 0  # classes at the end of the stream, seen while the learner plans

    @staticmethod
    def _require_class(ctx) -> None:
        if ctx.stream.scenario != "class":
            raise ConfigError(f"bic corrects the bias of one growing head towards new classes and "
                              f"needs --scenario class (got {ctx.stream.scenario}); drop bic")

    def before_experience(self, ctx, exp) -> None:
        self._require_class(ctx)

    def adapt_model(self, ctx, model, exp):
        self._require_class(ctx)
        self._classes = max(self._classes, exp.head_size)
        if exp.index == 0:
            return model  # every class is new: nothing to correct
        if not isinstance(model, BiasCorrection):
            return BiasCorrection(model, exp.label_offset)
        if model.new_from != exp.label_offset:
            model.repoint(exp.label_offset)
        return model

    def holdout(self, ctx, exp, data: Batch) -> Batch:
        y, n = data.y, len(data)
        keys = torch.rand(n, generator=ctx.generator).to(y.device, torch.float64)
        order = torch.argsort(y.double() * 2 + keys)  # by class, random within a class
        sorted_y = y[order]
        classes, counts = torch.unique(sorted_y, return_counts=True)
        slot = torch.searchsorted(classes, sorted_y)
        rank = torch.arange(n, device=y.device) - (torch.cumsum(counts, 0) - counts)[slot]
        share = torch.clamp(counts - 1, max=self.params.val_per_class)[slot]
        held = order[(rank < share) & (sorted_y >= exp.label_offset)]  # new classes only
        val = Batch(data.x[held], y[held].to(torch.int16), data.t[held].to(torch.int16))
        self.val = val if self.val is None else Batch(torch.cat([self.val.x, val.x]),
                                                      torch.cat([self.val.y, val.y]),
                                                      torch.cat([self.val.t, val.t]))
        keep = torch.ones(n, dtype=torch.bool, device=y.device)
        keep[held] = False
        return Batch(data.x[keep], y[keep], data.t[keep])

    def after_experience(self, ctx, exp, data) -> None:
        model = ctx.model
        if exp.index == 0 or not isinstance(model, BiasCorrection) or self.val is None:
            return
        y, bs = self.val.y.long(), ctx.cfg.batch_size
        with torch.no_grad():  # the frozen part: its logits do not change during stage 2
            was = model.training
            model.eval()
            o = torch.cat([model.inner(ctx.stream.prepare(chunk), None).float()
                           for chunk in self.val.x.split(ctx.cfg.eval_batch_size)])
            model.train(was)
        pair = [model.alpha, model.beta]
        for p in pair:
            p.requires_grad_(True)
        opt = (Adam(pair, lr=self.params.lr) if self.params.optimizer == "adam"
               else SGD(pair, lr=self.params.lr))
        for _ in range(self.params.epochs):
            perm = torch.randperm(len(y), generator=ctx.generator).to(y.device)
            for start in range(0, len(y), bs):
                idx = perm[start:start + bs]
                loss = F.cross_entropy(model.correct(o[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        for p in pair:
            p.requires_grad_(False)
            p.grad = None
        self.pairs.append([float(model.alpha), float(model.beta)])

    def report(self) -> dict:
        return {"alpha_beta": self.pairs, "val_samples": len(self.val) if self.val is not None else 0}

    def tensors(self) -> list[torch.Tensor]:
        return [] if self.val is None else [self.val.x, self.val.y, self.val.t]

    def planned_bytes(self, plan: Plan) -> int:
        return self.params.val_per_class * self._classes * (plan.sample_bytes + LABEL_BYTES)

    def state_dict(self) -> dict:
        val = None if self.val is None else {"x": self.val.x, "y": self.val.y, "t": self.val.t}
        return {"val": val, "pairs": self.pairs}

    def load_state_dict(self, state: dict) -> None:
        v = state["val"]
        self.val = None if v is None else Batch(v["x"], v["y"], v["t"])
        self.pairs = [[float(a), float(b)] for a, b in state["pairs"]]

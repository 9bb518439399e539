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

The bias layer is a head variant, :class:`edgelll.models.BiasHead`, wrapped around the head by
:meth:`adapt_model` from the second experience and re-pointed at each new experience's classes;
only the newest pair is active, as in the paper. The previous pair is not thrown away: it is folded into the head rows of
the classes it corrected (an exact rewrite of the same function) and reset to (1, 0). Class
scenario only: with task ids or a shared domain head there is no old/new class imbalance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..batch import Batch
from ..errors import ConfigError
from ..models import BiasHead
from ..optim import SGD, Adam  # torch.optim would import torch._dynamo (about 1 s)
from .base import Plan, Strategy

LABEL_BYTES = 4  # int16 label + int16 task id per stored validation sample


@dataclass(frozen=True)
class BiCParams:
    val_per_class: int = field(default=10, metadata={
        "help": "validation samples held out and stored per class"})
    epochs: int = field(default=50, metadata={"help": "stage-2 passes over the validation set"})
    lr: float = field(default=0.01, metadata={"help": "stage-2 learning rate"})
    optimizer: str = field(default="adam", metadata={"help": "adam | sgd (stage 2)"})

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
        self._classes = 0  # classes at the end of the stream, for the plan

    def setup(self, ctx) -> None:
        if ctx.stream.scenario != "class":
            raise ConfigError(f"bic corrects the bias of one growing head towards new classes and "
                              f"needs the class scenario (got {ctx.stream.scenario}); drop bic")
        if "independent" in ctx.cfg.strategies:
            raise ConfigError("bic folds its correction into one growing head, and independent "
                              "gives every task a head of its own; drop one of them")
        self._classes = ctx.stream.experiences[-1].head_size

    def adapt_model(self, ctx, model, exp):
        if exp.index == 0:
            return model  # every class is new: nothing to correct
        bias = model.head.find(BiasHead.kind)
        if bias is None:
            model.wrap_head(lambda head: BiasHead(head, exp.label_offset))
        elif bias.new_from != exp.label_offset:
            bias.repoint(exp.label_offset)
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
        model, bias = ctx.model, ctx.model.head.find(BiasHead.kind)
        if exp.index == 0 or bias is None or self.val is None:
            return
        y, bs = self.val.y.long(), ctx.cfg.batch_size
        with torch.no_grad():  # the frozen part: its logits do not change during stage 2
            was = model.training
            model.eval()
            o = torch.cat([bias.inner(model.forward_features(x), t.long()).float() for x, t in
                           zip(self.val.x.split(ctx.cfg.eval_batch_size),
                               self.val.t.split(ctx.cfg.eval_batch_size))])
            model.train(was)
        pair = [bias.alpha, bias.beta]
        for p in pair:
            p.requires_grad_(True)
        opt = (Adam(pair, lr=self.params.lr) if self.params.optimizer == "adam"
               else SGD(pair, lr=self.params.lr))
        for _ in range(self.params.epochs):
            perm = torch.randperm(len(y), generator=ctx.generator).to(y.device)
            for start in range(0, len(y), bs):
                idx = perm[start:start + bs]
                loss = F.cross_entropy(bias.correct(o[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        for p in pair:
            p.requires_grad_(False)
            p.grad = None
        self.pairs.append([float(bias.alpha), float(bias.beta)])

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

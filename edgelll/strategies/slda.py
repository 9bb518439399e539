"""Streaming linear discriminant analysis over the backbone's features (Hayes & Kanan 2020,
"Lifelong Machine Learning with Deep Streaming Linear Discriminant Analysis", arXiv:1909.01520),
learnt without gradients: class means and one within-class scatter shared by every class, both
updated by every sample, and prediction by the nearest mean in the scatter's shrunk Mahalanobis
metric,

    y*(x) = argmin_c || (x - mu_c) P ||,   P = V diag( sqrt((1 + s) m / (l + s m)) ) V^T,

``S = V diag(l) V^T`` the scatter and ``m = trace(S) / D`` (``edgelll.runtime.slda``; the array API
rule a device runs in numpy). Where ``--whiten`` fits such a map once on the base session, this
head refits it as new classes arrive, so their spread joins the metric. ``shrink`` is ``s``:
``auto`` (the default) chooses it as ``--whiten auto`` does, on the features of the last
experience that trains the backbone (class folds posing as ``--shots``-shot classes); it is 1
until then. Use it on a frozen backbone: ``edgelll learn -s slda --freeze-backbone-after 1``.

A streaming statistic learns each sample once: the head skips the later epochs over an
experience's data (their rows would count again in the scatter), so ``--epochs`` shapes only the
backbone's training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ._gradient_free import GradientFreeStrategy
from .base import Batch


@dataclass(frozen=True)
class SLDAParams:
    shrink: float | None = field(default=None, metadata={
        "number": "float",
        "help": "shrinkage of the metric toward plain NCM, a number >= 0 (0: Fisher's "
                "discriminant; None: auto, chosen on the base session as --whiten auto does)"})

    def __post_init__(self) -> None:
        if self.shrink is not None and not self.shrink >= 0:
            raise ConfigError(f"slda.shrink must be auto or a number >= 0, got {self.shrink}")


class SLDA(GradientFreeStrategy):
    name = "slda"
    description = "streaming LDA: class means and a shared covariance, learnt without gradients"
    Params = SLDAParams
    head_kind = "slda"

    def head_params(self) -> dict:
        return {"shrink": 1.0 if self.params.shrink is None else float(self.params.shrink)}

    def after_refit(self, ctx, head, feats, data: Batch) -> None:
        if self.params.shrink is None and len(torch.unique(data.y)) >= 2:
            from ..runtime.whiten import choose_shrink

            head.params["shrink"], _ = choose_shrink(
                feats.flatten(1).cpu().numpy(), data.y.cpu().numpy(), ctx.cfg.shots or 5,
                ctx.cfg.seed)

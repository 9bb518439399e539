"""Nearest class mean over the backbone's features, a head that learns in closed form (Mensink et
al. 2013, "Distance-based image classification: generalizing to new classes at near-zero cost",
TPAMI 35(11); the classifier of iCaRL, Rebuffi et al. 2017, arXiv:1611.07725, Algorithm 1).

    mu_c = (1 / n_c) sum_{i: y_i = c} phi(x_i),     y*(x) = argmin_c || phi(x) - mu_c ||,

with ``cosine=true`` over L2-normalised features and re-normalised means. The head
(``edgelll.models.NearestMeanHead``, ``online``) keeps per-class sums and counts and adds every
training batch's own rows to them under ``no_grad`` (replayed rows were counted when they were
new); the update is written against the array API (``edgelll.runtime.rules``), so a device adds
classes with numpy alone. New classes cost no gradient step and old means never drift while the
backbone stays fixed: use it on a frozen backbone, ``--freeze-backbone-after N``. Then every
gradient head below is frozen as well, and a step is a forward pass and a matrix product.

While the backbone still learns (experiences before N), the network's own head trains as usual
and the sums gather features of a moving backbone; at the end of such an experience its classes'
statistics are recomputed from its data with the backbone as it ended (one pass without
gradients), so they match what the frozen backbone will compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..models import NearestMeanHead
from .base import Batch, Strategy
from .replay import embed


@dataclass(frozen=True)
class NCMParams:
    cosine: bool = field(default=False, metadata={
        "help": "compare L2-normalised features with re-normalised means (cosine similarity)"})


class NCM(Strategy):
    name = "ncm"
    description = "nearest class mean over the backbone's features, learnt in closed form"
    Params = NCMParams

    def setup(self, ctx) -> None:
        if ctx.stream.scenario == "task":
            raise ConfigError("ncm keeps one mean per output unit, and task-scenario labels start "
                              "again in every task; use the class or domain scenario")
        if "independent" in ctx.cfg.strategies:
            raise ConfigError("ncm keeps class means in one shared feature space, and independent "
                              "gives every task its own; drop one of them")

    def adapt_model(self, ctx, model, exp):
        if model.head.find(NearestMeanHead.kind) is None:
            model.wrap_head(lambda head: NearestMeanHead(head, model.feat_dim,
                                                         cosine=self.params.cosine, online=True))
        return model

    @torch.no_grad()
    def after_experience(self, ctx, exp, data: Batch) -> None:
        model = ctx.model
        if not any(p.requires_grad for p in model.backbone.parameters()):
            return  # the running sums are exact: every feature came from this backbone
        head = model.head.find(NearestMeanHead.kind)
        classes = torch.unique(data.y).tolist()
        head.set_stats(embed(model, data.x), data.y, classes=classes)

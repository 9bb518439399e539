"""What the gradient-free head strategies (hebbian, competitive, neural-gas) share, modelled on
:mod:`edgelll.strategies.ncm`: the strategy wraps its head (``edgelll.models.gradient_free``)
around the network's own, the learner feeds it every batch's features under ``no_grad``, and with
``--freeze-backbone-after N`` only the head learns from experience N on (no backward pass). While
the backbone still moves, the head's classes of an experience are learned again from its data
with the backbone as it ended, so they match what the frozen backbone computes."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from ..errors import ConfigError
from .base import Batch, Strategy
from .replay import embed

# strategies whose heads decide predictions with their own class scores: one per run
DECIDING = ("ncm", "icarl", "hebbian", "competitive", "neural-gas", "slda")


class GradientFreeStrategy(Strategy):
    head_kind: ClassVar[str] = ""

    def setup(self, ctx) -> None:
        if ctx.stream.scenario == "task":
            raise ConfigError(f"{self.name} keeps one class row per output unit, and task-scenario "
                              f"labels start again in every task; use the class or domain scenario")
        if "independent" in ctx.cfg.strategies:
            raise ConfigError(f"{self.name} keeps its classes in one shared feature space, and "
                              f"independent gives every task its own; drop one of them")
        other = [s for s in ctx.cfg.strategies if s in DECIDING and s != self.name]
        if other:
            raise ConfigError(f"{self.name} and {other[0]} each decide predictions with their own "
                              f"class scores; drop one of them")

    def head_params(self) -> dict:
        return dataclasses.asdict(self.params)

    def adapt_model(self, ctx, model, exp):
        from ..models.gradient_free import KINDS

        if model.head.find(self.head_kind) is None:
            cls = KINDS[self.head_kind]
            model.wrap_head(lambda head: cls(head, model.feat_dim, **self.head_params()))
        head = model.head.find(self.head_kind)
        if not any(b.is_meta for b in head.buffers()):  # not the budget plan's simulated model
            self._head = head
        return model

    def report(self) -> dict:
        """The head's own figures for metrics.json (units, how many ever won, nodes, edges)."""
        head = getattr(self, "_head", None)
        return {"head": head.summary()} if head is not None else {}

    @torch.no_grad()
    def after_experience(self, ctx, exp, data: Batch) -> None:
        model = ctx.model
        if not any(p.requires_grad for p in model.backbone.parameters()):
            return  # every feature the head learned from came from this backbone
        head, feats = model.head.find(self.head_kind), embed(model, data.x)
        head.refit(feats, data.y)
        self.after_refit(ctx, head, feats, data)

    def after_refit(self, ctx, head, feats, data: Batch) -> None:
        """What a head settles from the backbone's final features of an experience it trained
        (slda: its shrinkage); nothing by default."""

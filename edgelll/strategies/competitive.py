"""Competitive learning head over the backbone's features (Rumelhart & Zipser 1985; LVQ1,
Kohonen 1990): ``per_class`` prototypes per class; for each input the winner among its class's
prototypes (closest, or largest response with ``by=response``) moves toward it,
``p += lr / (1 + decay n) (x - p)``, and with ``lvq=true`` a closer prototype of another class
moves away. Prediction: the class of the nearest prototype. The rule is
``edgelll.runtime.competitive`` (array API: the device learns with the same function in numpy);
its unsupervised form (clustering features into k groups) is ``edgelll.runtime.competitive.cluster``;
with ``clusters=K`` the strategy also runs it after every experience on the test features of every
class seen so far, labels unused, and reports how well the K groups recover the classes (purity,
NMI, ARI: :func:`edgelll.metrics.cluster_agreement`) under ``strategies.competitive.clusters`` in
``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ._gradient_free import GradientFreeStrategy
from .replay import embed


@dataclass(frozen=True)
class CompetitiveParams:
    per_class: int = field(default=3, metadata={"help": "prototypes per class"})
    lr: float = field(default=0.1, metadata={"help": "the winner's step"})
    decay: float = field(default=0.0, metadata={
        "help": "step lr / (1 + decay * wins); 1 with lr 1: running means"})
    by: str = field(default="distance", metadata={"help": "distance | response (the winner)"})
    lvq: bool = field(default=False, metadata={
        "help": "a closer prototype of a wrong class moves away (LVQ1)"})
    clusters: int = field(default=0, metadata={
        "help": "after each experience, cluster the seen classes' test features into this many "
                "groups without labels; purity, NMI, ARI in metrics.json (0: off)"})

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise ConfigError(f"competitive.per_class must be at least 1, got {self.per_class}")
        if not 0 < self.lr <= 1 or self.decay < 0:
            raise ConfigError(f"competitive.lr must be in (0, 1] and decay >= 0, got lr "
                              f"{self.lr}, decay {self.decay}")
        if self.clusters < 0:
            raise ConfigError(f"competitive.clusters must be 0 (off) or a number of groups, got "
                              f"{self.clusters}")
        if self.by not in ("distance", "response"):
            raise ConfigError(f"competitive.by must be distance or response, got {self.by!r}")


class Competitive(GradientFreeStrategy):
    name = "competitive"
    description = "competitive (winner-take-all, optionally LVQ) prototypes, without gradients"
    Params = CompetitiveParams
    head_kind = "competitive"

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self._clusters: list[dict] = []  # one entry per experience, with clusters=K

    def setup(self, ctx) -> None:
        super().setup(ctx)
        k, first = self.params.clusters, ctx.stream.experiences[0].x_test.shape[0]
        if k > first:
            raise ConfigError(f"competitive.clusters {k} is more groups than the first "
                              f"experience's {first} test samples; lower it")

    def head_params(self) -> dict:
        return {k: v for k, v in super().head_params().items() if k != "clusters"}  # not the head's

    @torch.no_grad()
    def after_experience(self, ctx, exp, data) -> None:
        super().after_experience(ctx, exp, data)
        if not self.params.clusters:
            return
        from ..metrics import cluster_agreement
        from ..runtime.competitive import cluster

        seen = ctx.stream.experiences[:exp.index + 1]
        feats = embed(ctx.model, torch.cat([e.x_test for e in seen]))
        labels = torch.cat([e.y_test for e in seen])
        _, assign = cluster(feats, self.params.clusters, batch=1024, by=self.params.by)
        self._clusters.append({"experience": exp.index, "k": self.params.clusters,
                               "samples": int(labels.numel()),
                               **cluster_agreement(assign.cpu().numpy(), labels.cpu().numpy())})

    def report(self) -> dict:
        return {**super().report(), **({"clusters": self._clusters} if self._clusters else {})}

    def state_dict(self) -> dict:
        return {"clusters": list(self._clusters)}

    def load_state_dict(self, state: dict) -> None:
        self._clusters = list(state.get("clusters", []))

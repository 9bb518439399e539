"""Competitive learning head over the backbone's features (Rumelhart & Zipser 1985; LVQ1,
Kohonen 1990): ``per_class`` prototypes per class; for each input the winner among its class's
prototypes (closest, or largest response with ``by=response``) moves toward it,
``p += lr / (1 + decay n) (x - p)``, and with ``lvq=true`` a closer prototype of another class
moves away. Prediction: the class of the nearest prototype. The rule is
``edgelll.runtime.competitive`` (array API: the device learns with the same function in numpy);
its unsupervised form (clustering features into k groups) is ``edgelll.runtime.competitive.cluster``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ._gradient_free import GradientFreeStrategy


@dataclass(frozen=True)
class CompetitiveParams:
    per_class: int = field(default=3, metadata={"help": "prototypes per class"})
    lr: float = field(default=0.1, metadata={"help": "the winner's step"})
    decay: float = field(default=0.0, metadata={
        "help": "step lr / (1 + decay * wins); 1 with lr 1: running means"})
    by: str = field(default="distance", metadata={"help": "distance | response (the winner)"})
    lvq: bool = field(default=False, metadata={
        "help": "a closer prototype of a wrong class moves away (LVQ1)"})

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise ConfigError(f"competitive.per_class must be at least 1, got {self.per_class}")
        if not 0 < self.lr <= 1 or self.decay < 0:
            raise ConfigError(f"competitive.lr must be in (0, 1] and decay >= 0, got lr "
                              f"{self.lr}, decay {self.decay}")
        if self.by not in ("distance", "response"):
            raise ConfigError(f"competitive.by must be distance or response, got {self.by!r}")


class Competitive(GradientFreeStrategy):
    name = "competitive"
    description = "competitive (winner-take-all, optionally LVQ) prototypes, without gradients"
    Params = CompetitiveParams
    head_kind = "competitive"

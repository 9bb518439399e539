"""Hebbian associative head over the backbone's features (Hebb 1949; the correlation matrix
memory, Kohonen 1972; Oja 1982 for the bounded option), learnt without gradients:

    w_ij = (1/p) sum_k x_i^k y_j^k   (normalised features, one-hot targets, a running mean),

predicting by the largest response, balanced by class frequency (``mean_j . x``); ``oja=true``
uses Oja's rule ``w_j += lr r (x - r w_j)`` instead. The rules are ``edgelll.runtime.hebbian``
(array API: the device learns with the same function in numpy). Use it on a frozen backbone:
``edgelll learn -s hebbian --freeze-backbone-after 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ._gradient_free import GradientFreeStrategy


@dataclass(frozen=True)
class HebbianParams:
    oja: bool = field(default=False, metadata={"help": "Oja's rule: bounded, normalised weights"})
    lr: float = field(default=0.01, metadata={"help": "Oja's rule's learning rate"})
    balanced: bool = field(default=True, metadata={
        "help": "divide each class's response by its share of the samples"})

    def __post_init__(self) -> None:
        if not 0 < self.lr <= 1:
            raise ConfigError(f"hebbian.lr must be in (0, 1], got {self.lr}")


class Hebbian(GradientFreeStrategy):
    name = "hebbian"
    description = "Hebbian associative head (Oja's rule as an option), learnt without gradients"
    Params = HebbianParams
    head_kind = "hebbian"

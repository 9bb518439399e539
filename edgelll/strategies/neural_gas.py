"""Neural-gas head over the backbone's features (Martinetz & Schulten 1991; Martinetz, Berkovich
& Schulten 1993, eq. 3.3), the few-shot class-incremental learner of TOPIC (Tao et al. 2020,
arXiv:2004.10956): ``per_class`` labelled nodes per class, set from the class's first samples (a
few-shot session's shots); every node of the input's class moves with a step that decays with
its distance rank and with its age, ``eps exp(-rank / lam) / (1 + age / tau)``, so old classes'
nodes stay put; competitive Hebbian edges link the two closest nodes and age out after
``max_age``. ``max_nodes`` caps the living nodes; left at 0 under ``--memory`` it is the most the
budget holds once everything else is planned (the slots a device may still add classes into: n
more nodes cost ``n (4 D + 5) + 4 ((M + n)^2 - M^2)`` bytes over M, their rows and edge ages), else
no cap. The head's buffers count towards ``--memory``, so a gas that cannot fit is refused before
training. Rules:
``edgelll.runtime.neural_gas`` (array API: the device runs the same functions in numpy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from ._gradient_free import GradientFreeStrategy


@dataclass(frozen=True)
class NeuralGasParams:
    per_class: int = field(default=5, metadata={"help": "node slots per class"})
    eps: float = field(default=0.05, metadata={"help": "the closest node's step"})
    lam: float = field(default=1.0, metadata={"help": "rank decay: step eps * exp(-rank / lam)"})
    tau: float = field(default=100.0, metadata={
        "help": "age stabilisation: steps divided by 1 + wins / tau"})
    max_age: float = field(default=50.0, metadata={"help": "edges older than this are removed"})
    max_nodes: int = field(default=0, metadata={"help": "cap on living nodes (0: none)"})

    def __post_init__(self) -> None:
        if self.per_class < 1 or self.max_nodes < 0:
            raise ConfigError(f"neural-gas.per_class must be at least 1 and max_nodes >= 0, got "
                              f"{self.per_class} and {self.max_nodes}")
        if not (0 < self.eps <= 1 and self.lam > 0 and self.tau > 0 and self.max_age >= 0):
            raise ConfigError("neural-gas needs 0 < eps <= 1, lam > 0, tau > 0 and max_age >= 0")


class NeuralGas(GradientFreeStrategy):
    name = "neural-gas"
    description = "neural gas with competitive Hebbian edges (TOPIC's FSCIL head), no gradients"
    Params = NeuralGasParams
    head_kind = "neural-gas"

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.max_nodes = self.params.max_nodes
        self._slots = 0

    def setup(self, ctx) -> None:
        super().setup(ctx)
        cap = self.params.max_nodes
        classes = max(e.head_size for e in ctx.stream.experiences)
        self._slots = classes * self.params.per_class
        if cap and cap < classes:
            raise ConfigError(f"neural-gas.max_nodes {cap} leaves no node for some of the "
                              f"stream's {classes} classes; raise it to at least {classes}")

    def head_params(self) -> dict:
        return {**super().head_params(), "max_nodes": self.max_nodes}

    def sized_by_budget(self) -> bool:
        return self.params.max_nodes == 0

    def fit_budget(self, plan, bytes_left: int) -> None:
        """The node cap: the final M slots plus the n more that ``bytes_left`` holds, in whole
        classes of ``per_class`` slots (4 n^2 + (8 M + 4 D + 5) n <= bytes_left)."""
        m, d, k = self._slots, plan.model.feat_dim, self.params.per_class
        b = 8 * m + 4 * d + 5
        n = int((-b + math.sqrt(b * b + 16 * max(bytes_left, 0))) / 8)
        self.max_nodes = m + n // k * k

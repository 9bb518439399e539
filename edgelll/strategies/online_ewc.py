"""Online EWC (Schwarz et al. 2018, Progress & Compress, arXiv:1805.06370).

EWC keeps one Fisher-weighted pull per past experience. Online EWC keeps a single running Fisher
and a single anchor: after experience k, with F_k the diagonal empirical Fisher at its end,

    F* <- gamma * F* + F_k,        theta* <- theta at the end of experience k,

and later training adds (lambda / 2) * sum_i F*_i (theta_i - theta*_i)^2. ``gamma`` (0 < gamma <= 1)
lets old experiences fade. (Progress & Compress and van de Ven's implementation scale the stored
sum by a further gamma inside the penalty; that is the same penalty with lambda replaced by
gamma * lambda.) Rows a head gains later start with zero Fisher: new parameters are free.
State: one Fisher and one anchor per parameter (2x the parameters), as in :mod:`.ewc`, whose
Fisher code, sampling and penalty this class reuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import Batch
from .ewc import EWC, _pad


@dataclass(frozen=True)
class OnlineEWCParams:
    lam: float = field(default=5000.0, metadata={"help": "penalty strength lambda"})
    gamma: float = field(default=1.0, metadata={
        "help": "decay of the running Fisher, 0 < gamma <= 1 (1: plain sum)"})
    fisher_samples: int = field(default=512, metadata={
        "help": "samples of the experience used for the Fisher (0: all)"})
    chunk: int = field(default=64, metadata={
        "help": "per-sample gradients computed at once (bounds temporary memory)"})

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ConfigError(f"online-ewc.lam must be >= 0, got {self.lam}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"online-ewc.gamma must be in (0, 1], got {self.gamma}")
        if self.fisher_samples < 0 or self.chunk < 1:
            raise ConfigError("online-ewc.fisher_samples must be >= 0 and online-ewc.chunk >= 1")


class OnlineEWC(EWC):
    name = "online-ewc"
    description = "online EWC: one decayed running Fisher, anchored at the latest solution"
    Params = OnlineEWCParams

    # EWC's penalty (lam/2) * (sum F (theta - anchor)^2 + offset) is used with offset kept at 0.

    def after_experience(self, ctx, exp, data: Batch) -> None:
        fisher = self.importance(ctx, data)
        gamma = self.params.gamma
        omega, anchor = {}, {}
        for name, p in ctx.model.named_parameters():
            if name not in fisher:
                continue
            old = self.omega.get(name)
            omega[name] = fisher[name] if old is None else gamma * _pad(old, p.shape) + fisher[name]
            anchor[name] = p.detach().clone()
        for name in self.omega.keys() - omega.keys():  # no longer trained: its pull fades too
            omega[name], anchor[name] = gamma * self.omega[name], self.anchor[name]
        self.omega, self.anchor, self.offset = omega, anchor, 0.0
        self.experiences += 1

    def stored_fisher(self) -> dict[str, torch.Tensor]:
        """The running Fisher F* (for inspection and tests)."""
        return self.omega

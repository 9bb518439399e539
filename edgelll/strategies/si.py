"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017, arXiv:1703.04200).

During an experience every parameter accumulates its contribution to the drop of the task loss
along the training trajectory, the path integral

    omega_i += -g_i(t) * (theta_i(t+1) - theta_i(t))        at every optimiser step,

where g(t) is the gradient of the task loss at theta(t). When the experience ends,

    Omega_i += omega_i / ((theta_i(end) - theta_i(start))^2 + xi),    omega <- 0,
    theta*  <- theta(end),

and later training adds c * sum_i Omega_i (theta_i - theta*_i)^2. Omega is the paper's
unclipped sum (it may hold small negative entries, as in Zenke's and van de Ven's code).

The learner's loss already includes this strategy's penalty, so in ``after_backward`` the
parameters' ``.grad`` is the gradient of the total loss. The task-loss gradient is recovered by
subtracting the penalty's gradient analytically, 2 c Omega (theta - theta*) (on the part of each
parameter that existed at the anchor); other strategies' terms (replay, EWC, ...) stay in g, as
they are part of what the model is trained on. g(t) and theta(t) are kept until ``after_step``
reads theta(t+1): exact for any optimiser (SGD, momentum, Adam), no lr * g^2 approximation.

Default c = 10: the value van de Ven & Tolias's code (arXiv:1904.07734) uses for split MNIST in
the task scenario (5000 in the class scenario, 50000 in the domain scenario); set it per run with
``--set si.c=...``. xi = 0.1 as in van de Ven's code (Zenke et al. use 1e-3 on MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import Batch, Plan, Strategy
from .ewc import _pad, quadratic_penalty


@dataclass(frozen=True)
class SIParams:
    c: float = field(default=10.0, metadata={"help": "penalty strength c"})
    xi: float = field(default=0.1, metadata={
        "help": "damping xi > 0 of the importance's denominator"})

    def __post_init__(self) -> None:
        if not self.c >= 0:
            raise ConfigError(f"si.c must be >= 0, got {self.c}")
        if not self.xi > 0:
            raise ConfigError(f"si.xi must be > 0, got {self.xi}")


class SI(Strategy):
    name = "si"
    description = "synaptic intelligence: importance from each parameter's path integral"
    Params = SIParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.big_omega: dict[str, torch.Tensor] = {}  # Omega, summed over past experiences
        self.anchor: dict[str, torch.Tensor] = {}  # theta* at the end of the latest experience
        self.omega: dict[str, torch.Tensor] = {}  # running path integral of this experience
        self.start: dict[str, torch.Tensor] = {}  # theta at the start of this experience
        self.prev: dict[str, torch.Tensor] = {}  # theta(t), between after_backward and after_step
        self.grad: dict[str, torch.Tensor] = {}  # task-loss gradient g(t), likewise
        self.experiences = 0

    def _penalised(self) -> bool:
        return bool(self.big_omega) and self.params.c > 0

    def extra_loss(self, ctx, batch, logits):
        if not self._penalised():
            return None
        return self.params.c * quadratic_penalty(ctx.model, self.big_omega, self.anchor)

    def _begin(self, model: torch.nn.Module) -> None:
        """First step of an experience: the model has its shape for it; theta(start) is now."""
        for k, p in model.named_parameters():
            if p.requires_grad:
                self.start[k] = p.detach().clone()
                self.omega[k] = torch.zeros_like(p)
                self.prev[k] = torch.empty_like(p)
                self.grad[k] = torch.empty_like(p)

    @torch.no_grad()
    def after_backward(self, ctx, batch: Batch) -> None:
        if not self.start:
            self._begin(ctx.model)
        params = dict(ctx.model.named_parameters())
        for k, g in self.grad.items():
            p = params[k]
            self.prev[k].copy_(p)
            if p.grad is None:
                g.zero_()
                continue
            g.copy_(p.grad)
            if self._penalised() and k in self.big_omega:  # remove d(penalty)/d theta
                w = self.big_omega[k]
                part = tuple(slice(0, n) for n in w.shape)
                g[part] -= 2 * self.params.c * w * (p[part] - self.anchor[k])

    @torch.no_grad()
    def after_step(self, ctx, batch: Batch) -> None:
        params = dict(ctx.model.named_parameters())
        for k, w in self.omega.items():
            step = self.prev[k].sub_(params[k])  # theta(t) - theta(t+1), in place
            w.addcmul_(self.grad[k], step)

    @torch.no_grad()
    def after_experience(self, ctx, exp, data: Batch) -> None:
        if not self.start:  # no step was taken: nothing moved, no importance gained
            self._begin(ctx.model)
        params = dict(ctx.model.named_parameters())
        big, anchor = {}, {}
        for k, w in self.omega.items():
            p = params[k].detach()
            gained = w / ((p - self.start[k]).pow(2) + self.params.xi)
            big[k] = gained + _pad(self.big_omega[k], p.shape) if k in self.big_omega else gained
            anchor[k] = p.clone()
        for k in self.big_omega.keys() - big.keys():  # no longer trained: keeps its pull
            big[k], anchor[k] = self.big_omega[k], self.anchor[k]
        self.big_omega, self.anchor = big, anchor
        self.omega, self.start, self.prev, self.grad = {}, {}, {}, {}
        self.experiences += 1

    @torch.no_grad()
    def after_growth(self, ctx, growth) -> None:
        """Net2Net growth mid-experience (models/net2net.py): Omega is copied, the running path
        integral sum g dtheta scales like a squared gradient, the anchors and theta(start) are
        values; theta(t) and g(t) are scratch between backward and step, made again."""
        from ..models.net2net import map_like
        self.big_omega = map_like(self.big_omega, growth, "copy")
        self.anchor = map_like(self.anchor, growth, "value")
        self.omega = map_like(self.omega, growth, "grad2")
        self.start = map_like(self.start, growth, "value")
        params = dict(ctx.model.named_parameters())
        for k, p in params.items():  # a layer the growth added trains from here on
            if p.requires_grad and k not in self.omega and self.start:
                self.start[k], self.omega[k] = p.detach().clone(), torch.zeros_like(p)
        self.prev = {k: torch.empty_like(params[k]) for k in self.omega}
        self.grad = {k: torch.empty_like(params[k]) for k in self.omega}

    def tensors(self) -> list[torch.Tensor]:
        return [*self.big_omega.values(), *self.anchor.values(), *self.omega.values(),
                *self.start.values(), *self.prev.values(), *self.grad.values()]

    def planned_bytes(self, plan: Plan) -> int:
        # Omega and theta* for every parameter; during an experience also omega, theta(start),
        # and theta(t), g(t) between backward and step.
        return 6 * plan.param_bytes

    def state_dict(self) -> dict:
        return {"big_omega": self.big_omega, "anchor": self.anchor, "omega": self.omega,
                "start": self.start, "experiences": self.experiences}

    def load_state_dict(self, state: dict) -> None:
        self.big_omega, self.anchor = dict(state["big_omega"]), dict(state["anchor"])
        self.omega, self.start = dict(state["omega"]), dict(state["start"])
        self.prev = {k: torch.empty_like(v) for k, v in self.omega.items()}
        self.grad = {k: torch.empty_like(v) for k, v in self.omega.items()}
        self.experiences = int(state["experiences"])

"""Adam and SGD with momentum, bit for bit what ``torch.optim`` computes, without its fixed cost.

Why not ``torch.optim``: constructing the first torch optimizer imports the ``torch._dynamo``
compiler (about 1 s of a 5 s Split MNIST run on 2 cores), which a run that never compiles has no
use for. These two optimizers do the same arithmetic, in the same order, as torch's with the
settings edgelll uses (Adam: betas 0.9/0.999, eps 1e-8, no weight decay, no amsgrad; SGD: momentum
m, dampening 0, no Nesterov), on whole lists of tensors (``torch._foreach_*``) rather than one
parameter at a time:

- Adam (Kingma & Ba 2015, arXiv:1412.6980, Algorithm 1): m <- lerp(m, g, 1 - b1);
  v <- b2 v + (1 - b2) g^2; p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
- SGD with momentum (Sutskever et al. 2013, as torch writes it): b <- m b + g (b <- g on the first
  step); p <- p - lr b.

On CPU torch runs these updates tensor by tensor and on CUDA with its foreach kernels; the calls
below are the ones its foreach path makes, which on CPU run the same per-tensor kernels, so the
results are bitwise equal on both (tests/test_optim.py checks CPU). State and ``state_dict()`` have
torch's layout (per-parameter ``step``/``exp_avg``/``exp_avg_sq``, or ``momentum_buffer``), so
checkpoints written by either load into the other, and ``optimizer.state`` and ``param_groups``
read the same to the learner's memory accounting and growth logic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .config import LearnConfig

# Group keys torch.optim writes in its state_dict; written the same so torch can load ours.
_ADAM_FIXED = {"weight_decay": 0.0, "amsgrad": False, "maximize": False, "foreach": None,
               "capturable": False, "differentiable": False, "fused": None,
               "decoupled_weight_decay": False}
_SGD_FIXED = {"dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "maximize": False,
              "foreach": None, "differentiable": False, "fused": None}


class _Optimizer:
    """One parameter group, torch's ``state`` / ``param_groups`` / ``state_dict`` shape."""

    _fixed: dict = {}
    _tunable: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor], defaults: dict) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.defaults = {**defaults, **self._fixed}
        self.param_groups = [{**self.defaults, "params": params}]
        self.state: dict[Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.requires_grad_(False)
                p.grad.zero_()

    def state_dict(self) -> dict:
        group = self.param_groups[0]
        index = {id(p): i for i, p in enumerate(group["params"])}
        return {"state": {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index},
                "param_groups": [{**{k: v for k, v in group.items() if k != "params"},
                                  "params": list(range(len(group["params"])))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state_dict written by this class or by the torch optimizer of the same kind."""
        groups, params = state_dict["param_groups"], self.param_groups[0]["params"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError("optimizer state holds a different set of parameters")
        saved = groups[0]
        for key, value in self._fixed.items():
            if key in ("foreach", "fused", "differentiable", "capturable"):
                continue  # how torch ran, not what it computed
            if bool(saved.get(key, value)) != bool(value):
                raise ValueError(f"optimizer state uses {key}={saved[key]!r}, which edgelll.optim "
                                 f"does not implement")
        state = {}
        for i, s in state_dict["state"].items():
            p = params[groups[0]["params"].index(i)]
            state[p] = {k: _to_param(k, v, p) for k, v in s.items()}
        self.param_groups[0].update({k: saved[k] for k in self._tunable})
        self.state = state


def _to_param(key: str, value, p: Tensor):
    if not torch.is_tensor(value):
        return value
    if key == "step":  # torch keeps the step a float32 scalar on the CPU
        return value.detach().clone().to(torch.float32)
    if value.shape != p.shape:
        raise ValueError(f"optimizer state {key} has shape {tuple(value.shape)}, the parameter "
                         f"{tuple(p.shape)}")
    return value.detach().to(device=p.device, dtype=p.dtype, copy=True)


def _by_device_dtype(params: list[Tensor]) -> list[list[Tensor]]:
    """Parameters that have a gradient, grouped as torch's foreach path groups them."""
    groups: dict[tuple, list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.device, p.dtype), []).append(p)
    return list(groups.values())


class Adam(_Optimizer):
    """``torch.optim.Adam(params, lr, betas, eps)`` with weight decay 0 and no amsgrad."""

    _fixed = _ADAM_FIXED
    _tunable = ("lr", "betas", "eps")

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if not (lr >= 0.0 and eps >= 0.0 and 0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid Adam settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})
        self._one = torch.tensor(1.0)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for params in _by_device_dtype(group["params"]):
            states = [self._state(p) for p in params]
            grads = [p.grad for p in params]
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, self._one, alpha=1.0)
            t = [s.item() for s in steps]
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, [(1 - beta2 ** k) ** 0.5 for k in t])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, [(lr / (1 - beta1 ** k)) * -1 for k in t])

    def _state(self, p: Tensor) -> dict:
        s = self.state.get(p)
        if not s:
            s = self.state[p] = {"step": torch.tensor(0.0, dtype=torch.float32),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return s


class SGD(_Optimizer):
    """``torch.optim.SGD(params, lr, momentum)`` with dampening 0, no Nesterov, no weight decay."""

    _fixed = _SGD_FIXED
    _tunable = ("lr", "momentum")

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, momentum: float = 0.0) -> None:
        if not (lr >= 0.0 and momentum >= 0.0):
            raise ValueError(f"invalid SGD settings lr={lr}, momentum={momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum = group["lr"], group["momentum"]
        for params in _by_device_dtype(group["params"]):
            grads = [p.grad for p in params]
            if momentum != 0:
                grads = self._momentum(params, grads, momentum)
            torch._foreach_add_(params, grads, alpha=-lr)

    def _momentum(self, params: list[Tensor], grads: list[Tensor], momentum: float) -> list[Tensor]:
        """Update the momentum buffers and return them; a parameter's first step copies its grad."""
        bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        held = [(b, g) for b, g in zip(bufs, grads) if b is not None]
        if held:
            torch._foreach_mul_([b for b, _ in held], momentum)
            torch._foreach_add_([b for b, _ in held], [g for _, g in held], alpha=1.0)
        for i, (p, g) in enumerate(zip(params, grads)):
            if bufs[i] is None:
                bufs[i] = g.detach().clone()
                self.state[p] = {"momentum_buffer": bufs[i]}
        return bufs


def make_optimizer(cfg: LearnConfig, model: nn.Module) -> Adam | SGD | None:
    """edgelll's Adam or SGD over the trainable parameters (torch's results bit for bit, without
    importing torch._dynamo); None when nothing is trainable (a frozen backbone under a
    closed-form head), and then no step takes a backward pass."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    if cfg.optimizer == "adam":
        return Adam(params, lr=cfg.lr)
    return SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def carry_optimizer_state(old: Adam | SGD, old_names: dict[str, nn.Parameter],
                          new: Adam | SGD, model: nn.Module) -> None:
    """Give ``new`` the per-parameter state ``old`` held (Adam's moments and step, SGD's momentum).

    A parameter still the same tensor keeps its state as it was; one replaced under the same name
    by a tensor grown along its first dimension (a head with more classes) keeps its old rows and
    starts the new rows at zero with the shared step count, which is exactly what a fixed-size head
    whose unused rows never had a gradient would hold (van de Ven & Tolias's setup). Any other
    parameter starts fresh.
    """
    by_id = {id(p): p for p in old_names.values()}
    for name, p in model.named_parameters():
        q = by_id.get(id(p))
        q = old_names.get(name) if q is None else q
        if q is None or q not in old.state:
            continue
        state = {}
        for key, value in old.state[q].items():
            if not torch.is_tensor(value) or value.dim() == 0 or value.shape == p.shape:
                state[key] = value.clone() if torch.is_tensor(value) else value
            elif value.shape[1:] == p.shape[1:] and value.shape[0] < p.shape[0]:
                grown = torch.zeros_like(p, dtype=value.dtype)
                grown[: value.shape[0]] = value
                state[key] = grown
            else:
                state = None
                break
        if state is not None:
            new.state[p] = state

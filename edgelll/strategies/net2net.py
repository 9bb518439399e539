"""Growth under parameter caps with Net2Net (Chen, Goodfellow & Shlens 2016, arXiv:1511.05641):
start from a small network and grow it, function-preserving, only when an experience is not
learned well enough, and only as much as the caps allow.

The policy, checked every ``check_every`` training steps of an experience: the training accuracy
is measured (eval mode, no gradients) on ``samples`` of the experience's data, or with ``measure``
"trained" on the last ``samples`` rows training saw in this experience, which hold what other
strategies mixed in (replayed samples of old classes, which in the class scenario are what a
too-small network fails on while it learns the new classes easily); at or above
``target`` nothing happens. Below it the network grows by the smallest step that may help: the
narrowest hidden layer is widened by ``widen`` of its width (Net2WiderNet, with ``noise`` on the
new units' incoming weights to break the copies' symmetry); when the previous widening in the
same experience raised the training accuracy by less than ``min_gain``, an identity layer is put
after the last hidden layer instead (Net2DeeperNet). Training then goes on with the optimizer's
state carried through the growth (``models.net2net.map_optimizer_state``) and every strategy's
parameter-shaped state mapped alike (EWC, online EWC, MAS and SI follow it).

With latent replay (``-s latent``), whose codes are the output of the backbone's first
``latent.layer`` modules (frozen from the second experience on), only the hidden layers at or
above that cut grow (the narrowest of them first; a deepening goes after the last hidden layer),
so a stored code stays what the network below computes; when every hidden layer sits below the
cut, growth is refused with that reason.

Caps: ``max_params`` (parameters of the whole network, counted with its head grown for the
whole stream: the classes or task heads still to come take rows too) and ``per_experience``
growths. A widening that would pass ``max_params`` adds as many units as still fit; a growth
that cannot fit at all is refused, the run goes on at its size, and the reason is in the log and in
``metrics.json`` (``strategies.net2net``: every growth and refusal with its experience, step,
layer and sizes, the milliseconds training paused for each growth, and the parameters after each
experience). Under ``--memory`` the plan counts
the largest network ``max_params`` allows: the extra parameters, their gradients and optimizer
state, and activations scaled by the same ratio (activations grow more slowly than parameters
when a layer widens or a layer is added, so this is an upper bound); a ``max_params`` is then
required.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .base import Strategy

# composing strategies whose state cannot follow a growth (or that read the features' width)
_REFUSED = {
    "independent": "gives every task a network of its own",
    "progressive": "gives every task a column of its own",
    "gem": "stores gradients shaped like the parameters before the growth",
    "agem": "stores gradients shaped like the parameters before the growth",
    "ncm": "keeps class means over the features a growth widens",
    "icarl": "keeps class means over the features a growth widens",
    "hebbian": "keeps its head over the features a growth widens",
    "competitive": "keeps its head over the features a growth widens",
    "neural-gas": "keeps its head over the features a growth widens",
    "slda": "keeps its head over the features a growth widens",
}


@dataclass(frozen=True)
class Net2NetParams:
    max_params: int = field(default=0, metadata={
        "help": "cap on the network's parameters (0: none; required under --memory)"})
    per_experience: int = field(default=2, metadata={"help": "at most this many growths an experience"})
    target: float = field(default=0.95, metadata={
        "help": "grow while the training accuracy is below this"})
    check_every: int = field(default=100, metadata={
        "help": "training steps between checks (the step budget before a growth)"})
    widen: float = field(default=0.5, metadata={"help": "a widening adds this fraction of the width"})
    min_gain: float = field(default=0.01, metadata={
        "help": "a widening that gained less accuracy than this is followed by a deepening"})
    noise: float = field(default=0.01, metadata={
        "help": "symmetry-breaking noise on new units' weights, times the weights' std"})
    samples: int = field(default=512, metadata={"help": "samples the training accuracy is measured on"})
    measure: str = field(default="experience", metadata={
        "help": "what the training accuracy is measured on: 'experience' (a random sample of its "
                "data) or 'trained' (the last batches training saw, with what other strategies "
                "mixed in, such as replayed samples)"})

    def __post_init__(self) -> None:
        if self.max_params < 0 or self.per_experience < 0 or self.samples < 1:
            raise ConfigError("net2net.max_params and per_experience must be >= 0 and samples >= 1")
        if not 0 < self.target <= 1 or self.check_every < 1 or self.widen <= 0:
            raise ConfigError(f"net2net needs 0 < target <= 1, check_every >= 1 and widen > 0, "
                              f"got {self.target}, {self.check_every}, {self.widen}")
        if self.min_gain < 0 or self.noise < 0:
            raise ConfigError("net2net.min_gain and noise must be >= 0")
        if self.measure not in ("experience", "trained"):
            raise ConfigError(f"net2net.measure must be 'experience' or 'trained', got "
                              f"{self.measure!r}")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class Net2Net(Strategy):
    name = "net2net"
    description = "Net2Net growth of a small network under a parameter cap, when a task is not learned"
    Params = Net2NetParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.events: list[dict] = []  # growths and refusals, in order
        self.params_after: list[int] = []  # the network's parameters after each experience
        self._opt_factor = 2  # optimizer state per parameter (Adam: two moments)
        self._exp, self._next, self._grown, self._last = -1, 0, 0, None
        self._experiences: list = []  # the stream's, for the head's growth to come
        self._floor = 0  # backbone modules below this index never grow (latent replay's codes)
        self._recent: list = []  # measure "trained": this experience's last batches

    def setup(self, ctx) -> None:
        from ..models.net2net import GROWABLE

        for other, why in _REFUSED.items():
            if other in ctx.cfg.strategies:
                raise ConfigError(f"net2net grows the network, and {other} {why}; drop one")
        if ctx.model.name not in GROWABLE:
            raise ConfigError(f"net2net grows the {', '.join(GROWABLE)} models, not "
                              f"{ctx.model.name!r}; use --model mlp or --model convnet")
        self._experiences = list(ctx.stream.experiences)
        if "latent" in ctx.cfg.strategies:  # its codes are the output of backbone[:layer]:
            from .latent import LatentParams  # growth only above them keeps them valid

            self._floor = LatentParams(**ctx.cfg.strategy_args.get("latent", {})).layer
        start, cap = self._at_end(ctx.model), self.params.max_params
        if cap and cap < start:
            raise ConfigError(f"net2net.max_params {cap:,} is below the starting network's "
                              f"{start:,} parameters (its head grown for the whole stream); "
                              f"raise it or start smaller (--set model.hidden=...)")
        if ctx.cfg.memory is not None and not cap:
            raise ConfigError("under --memory, net2net needs a cap on the network it may grow "
                              "into: set net2net.max_params")
        self._opt_factor = (2 if ctx.cfg.optimizer == "adam" else
                            1 if ctx.cfg.momentum else 0)

    def planned_bytes(self, plan) -> int:
        cap = self.params.max_params * 4  # float32
        if not cap or cap <= plan.param_bytes:
            return 0
        extra = cap - plan.param_bytes  # parameters, their gradients and optimizer state
        return (extra * (2 + self._opt_factor)
                + int(plan.activation_bytes * (cap / plan.param_bytes - 1)))

    def before_experience(self, ctx, exp) -> None:
        self._recent = []

    def after_step(self, ctx, batch) -> None:
        if self.params.measure != "trained":
            return
        self._recent.append(batch)  # references: the batch's tensors exist anyway
        while sum(len(b) for b in self._recent[1:]) >= self.params.samples:
            self._recent.pop(0)  # keep the fewest latest batches with ``samples`` rows

    @torch.no_grad()
    def _train_acc(self, ctx, model, data) -> float:
        if self.params.measure == "trained" and self._recent:
            x = torch.cat([b.x for b in self._recent])[-self.params.samples:]
            t = torch.cat([b.t for b in self._recent])[-self.params.samples:]
            y = torch.cat([b.y for b in self._recent])[-self.params.samples:]
        else:
            n = len(data)
            idx = torch.randperm(n, generator=ctx.generator)[:self.params.samples]
            idx = idx.to(data.x.device)
            x, t, y = data.x[idx], data.t[idx], data.y[idx]
        was = model.training
        model.eval()
        out = model(x, t)
        model.train(was)
        return float((out.argmax(1) == y).float().mean())

    def maybe_grow(self, ctx, exp, data, steps, optimizer):
        if exp.index != self._exp:  # a new experience: its own step budget and growth count
            self._exp, self._next, self._grown, self._last = exp.index, 0, 0, None
        if steps < self._next + self.params.check_every:
            return None
        self._next = steps
        model = ctx.model
        acc = self._train_acc(ctx, model, data)
        if acc >= self.params.target:
            return None
        base = {"experience": exp.index, "step": steps, "train_acc": round(acc, 4)}
        if self._grown >= self.params.per_experience:
            return self._refuse(ctx, base, f"net2net.per_experience {self.params.per_experience} "
                                           f"growths already made in this experience")
        choice = self._choice(model, acc)
        if choice is None:
            return self._refuse(ctx, base, f"latent replay stores the output of backbone module "
                                           f"{self._floor - 1}, above every hidden layer: a "
                                           f"growth would change its codes (lower latent.layer)")
        op, layer, new_width = choice
        before, cap = n_params(model), self.params.max_params
        after, end = self._sizes(model, op, layer, new_width, data)
        clipped = ""
        if cap and end > cap and op == "widen":  # widen by as many units as the cap allows
            from ..models.net2net import _hidden, _width

            width = _width(model.backbone[_hidden(model.backbone)[layer]])
            now = self._at_end(model)
            per_unit = (end - now) // (new_width - width)  # parameters are linear in a width
            fit = width + (cap - now) // per_unit
            if width < fit < new_width:
                new_width = fit
                after, end = self._sizes(model, op, layer, new_width, data)
                clipped = (f"; widened by {fit - width} units, as many as net2net.max_params "
                           f"{cap:,} allows")
        what = {"op": op, "layer": layer, "params_before": before, "params_after": after,
                "params_at_end": end}
        if cap and end > cap:
            grown = "" if end == after else f" ({end:,} once the head has grown for the stream)"
            return self._refuse(ctx, {**base, **what}, f"{op} to {after:,} parameters{grown} "
                                                       f"would exceed net2net.max_params {cap:,}")
        names = dict(model.named_parameters())
        growth = self._apply(model, op, layer, new_width, data, ctx.generator, self.params.noise)
        if optimizer is not None:
            from ..models.net2net import map_optimizer_state
            map_optimizer_state(optimizer, names, model, growth)
        self._grown += 1
        self._last = (op, acc)
        event = {**base, **what, "from": growth.old_width, "to": growth.new_width,
                 "why": f"training accuracy {acc:.3f} below net2net.target "
                        f"{self.params.target}{clipped}"}
        self.events.append({"event": "growth", **event})
        ctx.report(f"net2net: experience {exp.index}, step {steps}: {op} hidden layer {layer} "
                   f"{growth.old_width} -> {growth.new_width} units ({before:,} -> {after:,} "
                   f"parameters), training accuracy {acc:.3f}")
        return growth

    def growth_time(self, seconds: float) -> None:
        self.events[-1]["ms"] = round(seconds * 1e3, 2)  # not compared on resume: a wall time

    def _at_end(self, model) -> int:
        """The parameters ``model`` will have once its head has grown for every experience of
        the stream (new classes or task heads add rows the caps must leave room for)."""
        head = copy.deepcopy(model.head)
        for exp in self._experiences:
            head.adapt(exp)
        return n_params(model) - n_params(model.head) + n_params(head)

    def _sizes(self, model, op: str, layer: int, new_width: int, data) -> tuple[int, int]:
        """Parameters after the growth, now and at the stream's end, measured on a copy."""
        trial = copy.deepcopy(model)
        self._apply(trial, op, layer, new_width, data, torch.Generator().manual_seed(0), 0.0)
        return n_params(trial), self._at_end(trial)

    def _choice(self, model, acc: float) -> tuple[str, int, int] | None:
        """The growth to try, or None when every hidden layer sits below the latent-replay codes
        (widening one there, or deepening after it, would change what the codes are)."""
        from ..models.net2net import _hidden, _width

        seq = model.backbone
        hidden = _hidden(seq)
        widths = [_width(seq[i]) for i in hidden]
        free = [i for i, k in enumerate(hidden) if k >= self._floor]
        if not free:
            return None
        if self._last is not None and self._last[0] == "widen" and \
                acc - self._last[1] < self.params.min_gain:
            return "deepen", len(widths) - 1, widths[-1]  # widening stopped helping
        layer = min(free, key=lambda i: (widths[i], i))  # the narrowest first
        return "widen", layer, widths[layer] + max(1, int(round(widths[layer] * self.params.widen)))

    def _apply(self, model, op, layer, new_width, data, generator, noise):
        from ..models.net2net import grow_deeper, grow_wider

        if op == "widen":
            return grow_wider(model, layer, new_width, noise=noise, generator=generator)
        return grow_deeper(model, layer, data=data.x[:self.params.samples])

    def _refuse(self, ctx, event: dict, why: str) -> None:
        if not any(e["event"] == "refused" and e["experience"] == event["experience"]
                   for e in self.events):  # once an experience: the checks repeat
            self.events.append({"event": "refused", **event, "why": why})
            ctx.report(f"net2net: experience {event['experience']}, step {event['step']}: "
                       f"growth refused: {why}; training goes on at this size")
        return None

    def after_experience(self, ctx, exp, data) -> None:
        self.params_after.append(n_params(ctx.model))

    def report(self) -> dict:
        return {"params_after_experience": list(self.params_after),
                "growths": sum(e["event"] == "growth" for e in self.events),
                "events": list(self.events)}

    def state_dict(self) -> dict:
        return {"events": list(self.events), "params_after": list(self.params_after)}

    def load_state_dict(self, state: dict) -> None:
        self.events = list(state.get("events", []))
        self.params_after = list(state.get("params_after", []))

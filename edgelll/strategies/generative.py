"""Deep generative replay (Shin et al. 2017, arXiv:1705.08690), optionally with distillation
(DGR+distill, van de Ven & Tolias 2019, arXiv:1904.07734): the lecture's "Generating Data".

A generator (a small VAE, :mod:`edgelll.models.vae`, with its own Adam) learns alongside the
solver on every training batch, new data and replayed samples alike, so it comes to model the
whole input distribution seen so far. After each experience a frozen copy of the generator (its
decoder) and of the solver are kept. While later experiences are learned, each batch gets
``batch_size`` generated samples x~ = G_old(z), z ~ N(0, I), labelled by the frozen solver:
y~ = argmax_y S_old(x~) (in the task scenario each x~ gets a task id drawn uniformly over the
past tasks, and S_old's head for that task labels it). The learner's cross-entropy then trains on
both, as in DGR's L = r L(new) + (1 - r) L(replay) with r = 1/2. With ``distill=True`` the
replayed rows learn from soft targets instead of the hard labels, as in van de Ven & Tolias's
DGR+distill: L(replay) = T^2 KL(softmax(S_old(x~)/T) || softmax(S(x~)/T)) (Hinton et al. 2015),
over all current units, the classes S_old did not know getting target probability 0.

The VAE works in [0, 1] pixel space over the range of the stored data seen (lo..hi, e.g. 0..16 for
the embedded digits, 0..255 for MNIST); generated samples are mapped back to stored units and,
for integer storage such as uint8, rounded: replayed samples are quantised exactly like real
ones the model's preprocessing then normalises. The VAE, its Adam state and both frozen copies count in memory.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..kd import (frozen, frozen_copy, kd_loss, model_state, model_tensors, load_model_state,
                  widen_teacher)
from ..models.vae import VAE, make_decoder, vae_sizes
from ..optim import Adam  # torch.optim would import torch._dynamo (about 1 s)
from .base import Batch, Plan, Strategy


@dataclass(frozen=True)
class GenerativeParams:
    # Defaults chosen on the embedded digits (3 seeds, default run): (256,), 8, 2 steps gave final
    # ACC 0.81 against 0.70 for (128,), 8, 1 step (benchmarks/generative_defaults.py, the grid).
    hidden: tuple[int, ...] = field(default=(256,), metadata={
        "help": "VAE encoder widths (the decoder mirrors them)"})
    latent: int = field(default=8, metadata={"help": "VAE latent dimensions"})
    lr: float = field(default=3e-3, metadata={"help": "the VAE's Adam learning rate"})
    vae_steps: int = field(default=2, metadata={
        "help": "VAE updates per training step, on that step's batch"})
    batch_size: int | None = field(default=None, metadata={
        "help": "generated samples per step; None: the training batch size",
        "resolved": "cfg.batch_size"})
    distill: bool = field(default=False, metadata={
        "help": "DGR+distill: soft targets of the previous solver on replayed rows"})
    T: float = field(default=2.0, metadata={"help": "distillation temperature"})

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1 or self.latent < 1:
            raise ConfigError("generative.hidden must be positive widths (e.g. 256,256) and "
                              "generative.latent at least 1")
        if not self.lr > 0 or not self.T > 0:
            raise ConfigError(f"generative.lr and generative.T must be > 0, got lr={self.lr}, "
                              f"T={self.T}")
        if self.vae_steps < 1:
            raise ConfigError(f"generative.vae_steps must be at least 1, got {self.vae_steps}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"generative.batch_size must be at least 1, got {self.batch_size}")


class GenerativeReplay(Strategy):
    name = "generative"
    description = "deep generative replay: a VAE's samples labelled by the previous model"
    Params = GenerativeParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.vae: VAE | None = None
        self.opt: Adam | None = None
        self.old_decoder: torch.nn.Module | None = None
        self.old_solver: torch.nn.Module | None = None
        self.lo = self.hi = None  # range of the stored data seen (the VAE's [0, 1])
        self.old_range: tuple[float, float] | None = None  # the range the frozen decoder knew
        self.past_tasks = 0
        self.input_shape: tuple[int, ...] = ()
        self.replayed: tuple[int, int, torch.Tensor] | None = None  # rows this step, old logits

    def extra_rows(self, batch_size: int) -> int:
        return self.params.batch_size or batch_size

    def planned_bytes(self, plan: Plan) -> int:
        # Input width from the stream when known, else sample_bytes (>= it for any dtype).
        n_in = math.prod(self.input_shape) if self.input_shape else plan.sample_bytes
        enc, dec, n_tensors = vae_sizes(n_in, self.params.hidden, self.params.latent)
        # float32 VAE + Adam's two moments and step per tensor + frozen decoder + frozen solver
        return 4 * (3 * (enc + dec) + n_tensors + dec) + plan.model_bytes

    def setup(self, ctx) -> None:
        self.input_shape = tuple(ctx.stream.input_shape)

    def training_data(self, ctx, exp, data: Batch) -> Batch:
        lo, hi = float(data.x.min()), float(data.x.max())
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        return data

    def before_experience(self, ctx, exp) -> None:
        if self.vae is None:  # its init draws a seed from the run's generator, not torch's RNG
            seed = int(torch.randint(2**62, (1,), generator=ctx.generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.vae = VAE(ctx.stream.input_shape, self.params.hidden, self.params.latent)
            self.vae.to(ctx.device)
            self.opt = Adam(self.vae.parameters(), lr=self.params.lr)

    def _to_stored(self, x01: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        lo, hi = self.old_range
        x = lo + x01 * (hi - lo)
        if not dtype.is_floating_point:
            x = x.round_().clamp_(lo, hi)
        return x.to(dtype)

    @torch.no_grad()
    def generate(self, ctx, n: int, dtype: torch.dtype) -> tuple[Batch, torch.Tensor]:
        """n samples of the frozen generator, labelled by the frozen solver (and its logits)."""
        ref = next(self.old_decoder.parameters())
        z = torch.randn((n, self.params.latent), generator=ctx.generator).to(ref.device)
        x01 = torch.sigmoid(self.old_decoder(z)).view(n, *self.input_shape)
        x = self._to_stored(x01, dtype)
        t = torch.randint(0, self.past_tasks, (n,), generator=ctx.generator).to(ref.device)
        logits = self.old_solver.logits(x, t)
        return Batch(x, logits.argmax(1), t), logits.float()

    def mix_batch(self, ctx, batch: Batch) -> Batch:
        self.replayed = None
        if self.old_solver is None:
            return batch
        fake, logits = self.generate(ctx, self.extra_rows(len(batch)), batch.x.dtype)
        self.replayed = (len(batch), len(batch) + len(fake), logits)
        return batch.cat(fake)

    def replaces_loss(self) -> bool:
        return self.params.distill

    def task_loss(self, ctx, batch, logits):
        # DGR+distill: hard labels on every row but the replayed ones, which learn from the old
        # solver's soft targets instead; each row weighs the same, as in the plain mean.
        z = logits.float()
        if self.replayed is None:
            return F.cross_entropy(z, batch.y)
        start, stop, old = self.replayed
        replayed = torch.zeros(len(z), dtype=torch.bool, device=z.device)
        replayed[start:stop] = True
        hard = F.cross_entropy(z, batch.y, reduction="none").masked_fill(replayed, 0.0)
        # Soft targets over every current unit: the classes the old solver did not know get
        # probability 0 (logit -inf), so replayed rows also learn "not a new class".
        soft = kd_loss(z[start:stop], widen_teacher(old, z.shape[1]), self.params.T)
        return (hard.sum() + (stop - start) * soft) / len(z)

    def after_step(self, ctx, batch: Batch) -> None:
        scale = max(self.hi - self.lo, 1e-12)
        x01 = ((batch.x.float() - self.lo) / scale).clamp_(0, 1)
        for _ in range(self.params.vae_steps):
            loss = self.vae.loss(x01, ctx.generator)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def after_experience(self, ctx, exp, data: Batch) -> None:
        self.replayed = None
        self.old_decoder = frozen(copy.deepcopy(self.vae.decoder))
        self.old_range = (self.lo, self.hi)
        self.old_solver = frozen_copy(ctx.model)
        self.past_tasks = max(self.past_tasks, exp.task_id + 1)

    def tensors(self) -> list[torch.Tensor]:
        if self.vae is None:
            return []
        opt = [v for s in self.opt.state.values() for v in s.values() if torch.is_tensor(v)]
        return [*self.vae.parameters(), *opt, *model_tensors(self.old_decoder),
                *model_tensors(self.old_solver)]

    def state_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "past_tasks": self.past_tasks,
                "old_range": list(self.old_range) if self.old_range else None,
                "input_shape": list(self.input_shape),
                "vae": None if self.vae is None else self.vae.state_dict(),
                "opt": None if self.opt is None else self.opt.state_dict(),
                "old_decoder": None if self.old_decoder is None else self.old_decoder.state_dict(),
                "old_solver": model_state(self.old_solver)}

    def load_state_dict(self, state: dict) -> None:
        self.lo, self.hi, self.past_tasks = state["lo"], state["hi"], int(state["past_tasks"])
        self.old_range = tuple(state["old_range"]) if state["old_range"] else None
        self.input_shape = tuple(state["input_shape"])
        p = self.params
        if state["vae"] is not None:  # built on the meta device, then given the stored tensors
            with torch.device("meta"):
                self.vae = VAE(self.input_shape, p.hidden, p.latent)
            self.vae.load_state_dict(state["vae"], assign=True)
            self.opt = Adam(self.vae.parameters(), lr=p.lr)
            self.opt.load_state_dict(state["opt"])
        if state["old_decoder"] is not None:
            with torch.device("meta"):
                dec = make_decoder(self.input_shape, p.hidden, p.latent)
            dec.load_state_dict(state["old_decoder"], assign=True)
            self.old_decoder = frozen(dec)
        self.old_solver = load_model_state(state["old_solver"])

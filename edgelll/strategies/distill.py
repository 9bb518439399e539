"""Knowledge distillation into a smaller student, incrementally (Hinton et al. 2015,
arXiv:1503.02531).

The learner's model (``--model``, e.g. ``mlp-small``) is the student, the network that is
deployed. Its loss is the paper's weighted sum of the hard-label and the soft-target terms,

    L = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T)),

with s, t the student's and teacher's logits. The learner always adds CE(y, s), so
:meth:`Distill.extra_loss` returns ``alpha * (kd - CE)``, CE recomputed from the same logits.

The teacher is either
- a finished edgelll run (``teacher=PATH``): for experience i its checkpoint
  ``PATH/checkpoints/exp{i:03d}.pt`` (the teacher as it was after learning experience i), frozen;
  its stream (data, stream, scenario, tasks, class order) must be this run's; or
- trained alongside (default): ``teacher_model`` (``teacher_hidden``) grows its head with each
  experience as the learner's model does and learns from the same batches by cross-entropy with its
  own Adam at the run's lr. Its logits are detached before they enter the student's loss, so the
  teacher's update never reaches the student's gradient and vice versa, and it is initialised
  from its own seeded stream: with alpha = 0 the student is bit for bit the one trained without
  distill. Its parameters and Adam state are training-time state and count in the memory report.

A student with more parameters than the teacher (or than ``student_params``) is refused before
training. ``report()`` gives both parameter counts and bytes and both accuracy matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..kd import frozen, kd_loss, model_state, model_tensors, rebuild_from
from ..evaluation import evaluate_all
from ..models import create_model, model_params, rebuild
from ..optim import Adam  # torch.optim would import torch._dynamo (about 1 s)
from ..runs import checkpoint_path, load_checkpoint
from .base import Plan, Strategy

STREAM_KEYS = ("data", "stream", "scenario", "tasks", "class_order", "base_classes", "ways", "shots",
               "sessions")


@dataclass(frozen=True)
class DistillParams:
    T: float = field(default=2.0, metadata={"help": "temperature"})
    alpha: float = field(default=0.5, metadata={
        "help": "weight of the soft-target term, (1 - alpha) on the labels"})
    teacher: str = field(default="", metadata={
        "help": 'a finished run directory; "" trains a teacher alongside'})
    teacher_model: str = field(default="mlp", metadata={
        "help": "the teacher's network (`edgelll list models`), when trained alongside"})
    teacher_hidden: tuple[int, ...] = field(default=(400, 400), metadata={
        "help": "the teacher's hidden widths, when trained alongside"})
    student_params: int | None = field(default=None, metadata={
        "help": "refuse a student with more parameters than this; None: no limit"})

    def __post_init__(self) -> None:
        if not self.T > 0:
            raise ConfigError(f"distill.T must be > 0, got {self.T}; e.g. --set distill.T=2")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distill.alpha must be in [0, 1], got {self.alpha}")
        if self.student_params is not None and self.student_params < 1:
            raise ConfigError(f"distill.student_params must be at least 1, got {self.student_params}")
        if not self.teacher:
            model_params(self.teacher_model)  # an unknown name is a ConfigError with suggestions
            if not self.teacher_hidden or min(self.teacher_hidden) < 1:
                raise ConfigError("distill.teacher_hidden must be positive widths, e.g. 400,400")


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


class Distill(Strategy):
    name = "distill"
    description = "distill a teacher (trained alongside or a finished run) into a smaller student"
    Params = DistillParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.teacher: torch.nn.Module | None = None
        self.opt: Adam | None = None  # the teacher's, when trained alongside
        self.teacher_acc: list[list[float]] = []
        self.student_acc: list[list[float]] = []
        self.sizes: dict = {}  # parameter counts and bytes of both, for the report
        self._planned = 0

    # -- the teacher ------------------------------------------------------------------------------
    def _new_teacher(self, ctx) -> torch.nn.Module:
        p, first = self.params, ctx.stream.experiences[0]
        multi = ctx.stream.scenario == "task"
        args = {"hidden": tuple(p.teacher_hidden)} if isinstance(
            model_params(p.teacher_model).get("hidden"), tuple) else {}
        return create_model(p.teacher_model, ctx.model.input_shape,
                            first.n_local_classes if multi else first.head_size,
                            multi_head=multi, input=ctx.model.preprocess.args(), **args)

    def _teacher_checkpoint(self, index: int, device="cpu") -> dict:
        return load_checkpoint(checkpoint_path(Path(self.params.teacher).expanduser(), index),
                               map_location=device)

    def _check_teacher_run(self, ctx) -> dict:
        root = Path(self.params.teacher).expanduser()
        missing = [i for i in range(len(ctx.stream)) if not checkpoint_path(root, i).is_file()]
        if missing:
            raise ConfigError(f"distill.teacher {root} has no checkpoint for experience(s) "
                              f"{missing}; give a finished run with checkpoints of this stream")
        last = self._teacher_checkpoint(len(ctx.stream) - 1)
        theirs, ours = last.get("config", {}), ctx.cfg.to_dict()
        keys = STREAM_KEYS + (("seed",) if ctx.cfg.stream == "permuted" else ())
        diff = [k for k in keys if theirs.get(k) != ours[k]]
        if not diff and list(last.get("class_order", [])) != list(ctx.stream.class_order):
            diff = ["class order"]
        if diff:
            raise ConfigError(f"distill.teacher {root} learnt another stream ({', '.join(diff)} "
                              f"differ); use a teacher run of the same data, stream and scenario")
        return last

    def setup(self, ctx) -> None:
        """Refuse a nonsensical student before training; size the teacher for the plan."""
        from ..budget import final_model, optimizer_state_bytes  # budget imports the strategies

        student = _count(final_model(ctx.model, ctx.stream, [], ctx))
        if self.params.teacher:
            last = self._check_teacher_run(ctx)
            with torch.device("meta"):
                teacher = _count(rebuild(last["spec"]))
            self._planned = sum(t.nbytes for t in last["model"].values())
        else:
            with torch.device("meta"):
                sim = self._new_teacher(ctx)
                for exp in ctx.stream.experiences:
                    sim.adapt(exp)
            params = list(sim.parameters())
            teacher = _count(sim)
            self._planned = (sum(p.nbytes for p in params) + sum(b.nbytes for b in sim.buffers())
                             + optimizer_state_bytes(params, "adam", 0.0))
        limit = self.params.student_params
        if limit is not None and student > limit:
            raise ConfigError(f"the student ({ctx.cfg.model}) has {student} parameters, more than "
                              f"distill.student_params={limit}; choose a smaller --model")
        if student > teacher:
            raise ConfigError(f"the student ({ctx.cfg.model}, {student} parameters) is larger than "
                              f"its teacher ({teacher}); choose a smaller --model or a larger teacher")

    # -- hooks ------------------------------------------------------------------------------------
    def before_experience(self, ctx, exp) -> None:
        if self.params.teacher:
            ckpt = self._teacher_checkpoint(exp.index, ctx.device)
            self.teacher = frozen(rebuild_from(ckpt["spec"], ckpt["model"]))
            return
        with torch.random.fork_rng(devices=[]):  # the student's random numbers stay untouched
            torch.manual_seed((ctx.cfg.seed + 1) * 1_000_003 + exp.index)
            if self.teacher is None:
                self.teacher = self._new_teacher(ctx).to(ctx.device)
            grew = self.teacher.adapt(exp)
        if grew or self.opt is None:
            self.teacher.to(ctx.device)
            self.opt = Adam(self.teacher.parameters(), lr=ctx.cfg.lr)

    def extra_loss(self, ctx, batch, logits):
        x, t_ids = batch.x, batch.t
        if self.opt is not None:  # trained alongside: one step on the same batch
            self.teacher.train()
            out = self.teacher(x, t_ids)
            self.opt.zero_grad(set_to_none=True)
            F.cross_entropy(out.float(), batch.y).backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)  # gradients are not kept between steps
            target = out.detach()  # the student never differentiates into the teacher
        else:
            with torch.no_grad():
                target = self.teacher(x, t_ids)
        if self.params.alpha == 0:
            return None
        ce = F.cross_entropy(logits.float(), batch.y)
        return self.params.alpha * (kd_loss(logits, target, self.params.T) - ce)

    def after_experience(self, ctx, exp, data) -> None:
        self.teacher_acc.append(evaluate_all(self.teacher, ctx.stream, ctx.cfg))
        self.student_acc.append(evaluate_all(ctx.model, ctx.stream, ctx.cfg))
        self.sizes = {
            "teacher": {"params": _count(self.teacher),
                        "bytes": sum(p.nbytes for p in self.teacher.parameters())},
            "student": {"params": _count(ctx.model),
                        "bytes": sum(p.nbytes for p in ctx.model.parameters())}}

    def report(self) -> dict:
        if not self.teacher_acc:
            return {}
        source = self.params.teacher or f"alongside ({self.params.teacher_model})"
        out = {"teacher_source": source}
        for who, acc in (("teacher", self.teacher_acc), ("student", self.student_acc)):
            out[who] = {**self.sizes.get(who, {}), "acc_matrix": acc,
                        "acc": sum(acc[-1]) / len(acc[-1])}
        return out

    # -- state and bytes --------------------------------------------------------------------------
    def tensors(self) -> list[torch.Tensor]:
        out = model_tensors(self.teacher)
        if self.opt is not None:
            out += [v for s in self.opt.state.values() for v in s.values()
                    if isinstance(v, torch.Tensor)]
        return out

    def planned_bytes(self, plan: Plan) -> int:
        return self._planned

    def state_dict(self) -> dict:
        alongside = self.opt is not None
        return {"teacher": model_state(self.teacher) if alongside else None,
                "opt": self.opt.state_dict() if alongside else None,
                "teacher_acc": self.teacher_acc, "student_acc": self.student_acc,
                "sizes": self.sizes}

    def load_state_dict(self, state: dict) -> None:
        self.teacher_acc = [list(map(float, r)) for r in state["teacher_acc"]]
        self.student_acc = [list(map(float, r)) for r in state["student_acc"]]
        self.sizes = dict(state["sizes"])
        self.teacher = self.opt = None  # a loaded teacher is read again in before_experience
        if state["teacher"] is not None:
            t = state["teacher"]
            self.teacher = rebuild_from(t["spec"], dict(t["state"]))
            self.opt = Adam(self.teacher.parameters(), lr=1e-3)
            self.opt.load_state_dict(state["opt"])  # restores the run's lr with the moments

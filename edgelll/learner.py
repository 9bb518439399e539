"""The one learner loop: a stream of experiences, composable strategies, budgets, metrics and
crash-safe run directories.

Before anything trains, every strategy's ``setup`` checks that it fits the run and the memory
budget is planned. For each experience: strategies prepare (``before_experience``,
``adapt_model``), the head makes room for new classes, the backbone freezes once
``freeze_backbone_after`` experiences are done, the optimiser is rebuilt if the trainable
parameters changed, and training runs whole batches as tensors (``mix_batch`` -> features -> a
closed-form head's ``update`` -> head -> loss and ``extra_loss`` -> backward -> ``after_backward``
-> step) until the epochs, ``steps`` or compute budget end it. With nothing trainable (a frozen
backbone under a closed-form head) a step is the forward pass and the head's update alone. Then
``after_experience``, a row of the accuracy matrix over every experience (future ones too, for
FWT), and an atomic checkpoint.
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from . import metrics as M
from .batch import Batch
from .budget import Probe, measure_memory, plan_memory, probe, steps_for_flops
from .config import LearnConfig
from .data import Dataset, from_arrays, load_dataset
from .describe import resolved_values
from .errors import CheckpointError, ConfigError, EdgelllError
from .evaluation import autocast, evaluate_all
from .models import create_model, rebuild
from .models.preprocess import dtype_name
from .optim import SGD, Adam, carry_optimizer_state, make_optimizer
from .plots import run_title, write_acc_csv
from .report import Reporter, planned_steps
from .guards import SHAPE_ERRORS, check_model, check_plan, shape_error
from .resume import check_checkpoint, elapsed_before, same_config
from .runs import (RunLock, checkpoint_path, create_run_dir, latest_checkpoint, load_checkpoint,
                   remove_stale_temporaries, save_checkpoint, write_json)
from .strategies import Context, Strategy, create_strategy
from .fscil import fscil_spec
from .streams import Experience, Stream, make_stream

if TYPE_CHECKING:  # imported when used: `python -m edgelll.plot_job` must not find it loaded
    from .plot_job import PlotJob


@dataclass
class RunResult:
    config: LearnConfig
    acc_matrix: list[list[float]]
    random_acc: list[float]
    metrics: dict
    memory: dict
    experiences: list[dict]
    run_dir: Path | None
    model: nn.Module = field(repr=False)
    strategies: list[Strategy] = field(repr=False)
    plot: PlotJob | None = field(default=None, repr=False)  # .wait() for accuracy.png


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available; use --device cpu")
    return torch.device(name)


def _dataset(cfg: LearnConfig, data) -> Dataset:
    if data is None:
        return load_dataset(cfg.data, layout=cfg.layout)
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return from_arrays(*data, layout=cfg.layout)
    raise ConfigError("data must be a Dataset or (x_train, y_train, x_test, y_test) arrays")


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _env(device: torch.device) -> dict:
    import platform

    import numpy

    from . import __version__
    env = {"edgelll": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "platform": platform.platform(), "device": str(device),
           "threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available()}
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
        env["cuda_version"] = torch.version.cuda
    return env


class Learner:
    """Holds one run's state; :func:`learn` drives it. Separate so tests can step it."""

    def __init__(self, cfg: LearnConfig, data=None, run_dir: str | Path | None = None,
                 resume: bool = False, reporter: Reporter | None = None) -> None:
        self.cfg = cfg
        self.reporter = reporter or Reporter(None)
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.stream = make_stream(_dataset(cfg, data), cfg.stream, cfg.scenario, cfg.tasks,
                                  cfg.class_order, cfg.seed, self.device, fscil_spec(cfg))
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        first = self.stream.experiences[0]
        multi = cfg.scenario == "task"
        check_model(cfg, self.stream.input_shape, first.n_local_classes if multi else
                    first.head_size, multi, self.device)  # before any real allocation
        self.model = new_model(cfg, self.stream).to(self.device)
        if cfg.whiten is not None:
            self.model.add_whiten()  # the identity until fitted: counted in --memory from the start
        self.strategies = [create_strategy(n, cfg.strategy_args.get(n, {})) for n in cfg.strategies]
        replacing = [s for s in self.strategies if s.replaces_loss()]
        if len(replacing) > 1:
            raise ConfigError(f"{replacing[0].name} and {replacing[1].name} each replace the "
                              f"cross-entropy loss; use one of them")
        self.task_loss = replacing[0] if replacing else None  # the strategy whose loss is used
        self.ctx = Context(cfg, self.stream, self.model, self.device, self.generator,
                           say=self.reporter.message)
        for s in self.strategies:
            s.setup(self.ctx)
        try:  # the model's first forward pass: arguments that do not fit the samples fail here
            self.probe = probe(self.model, first.x_test[:1],
                               torch.zeros(1, dtype=torch.long, device=self.device))
        except SHAPE_ERRORS as exc:
            raise shape_error(cfg, self.stream.input_shape, exc) from None
        with torch.random.fork_rng(devices=[]):
            self.planned, self.plan = plan_memory(self.model, self.stream, self.strategies, self.ctx,
                                                  cfg, self.probe.activation_bytes)
        check_plan(self.planned, self.device)  # before buffers are sized by the plan
        self.rows = cfg.batch_size + sum(s.extra_rows(cfg.batch_size) for s in self.strategies)
        # At most this many full-batch steps fit --compute-flops (steps cost at least a batch's
        # forward and backward; strategies add theirs, counted exactly as the steps run).
        self.flops_cap_steps = steps_for_flops(cfg.compute_flops, self.probe.forward_flops,
                                               cfg.batch_size)
        self.random_acc = evaluate_all(self.model, self.stream, cfg)
        self.acc: list[list[float]] = []
        self.stats: list[dict] = []
        self.peak_memory: dict[str, int] = {}
        self.optimizer: Adam | SGD | None = None
        self.next_experience = 0
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.lock: RunLock | None = None  # held while this learner writes in run_dir
        self.elapsed_before, self._run_start = 0.0, time.perf_counter()  # seconds of earlier runs
        if resume:
            self._resume()
        elif self.run_dir is not None:
            self.lock = create_run_dir(self.run_dir)
            try:
                write_json(self.run_dir / "env.json", _env(self.device))
                # config.json last: a directory without it was never begun and may be reused.
                write_json(self.run_dir / "config.json", cfg.to_dict())
            except BaseException:
                self.lock.release()
                raise
        self.reporter.run_started(self.run_dir, resume)

    # -- resume -------------------------------------------------------------------------------
    def _resume(self) -> None:
        if self.run_dir is None or not (self.run_dir / "config.json").is_file():
            raise CheckpointError(f"{self.run_dir} is not an edgelll run directory (no config.json); "
                                  f"a run stopped before it began can be started again with --out")
        self.lock = RunLock(self.run_dir)  # a second --resume of the same run is refused here
        try:
            self._resume_locked()
        except BaseException:
            self.lock.release()  # a refused resume leaves the run free for the next try
            raise

    def _resume_locked(self) -> None:
        remove_stale_temporaries(self.run_dir)
        path = latest_checkpoint(self.run_dir)
        if path is None:
            # Stopped during its first experience: nothing was completed, so the run starts over
            # in its own directory under the config it was created with.
            try:
                stored = json.loads((self.run_dir / "config.json").read_text())
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"cannot read {self.run_dir / 'config.json'} ({exc})"
                                      .splitlines()[0]) from None
            if not same_config(stored, self.cfg):
                raise CheckpointError(f"{self.run_dir / 'config.json'} holds a different config; "
                                      f"it cannot be resumed with this one")
            (self.run_dir / "checkpoints").mkdir(exist_ok=True)
            return
        ckpt = load_checkpoint(path, map_location=self.device)
        if not same_config(ckpt.get("config"), self.cfg):
            raise CheckpointError(f"checkpoint {path} was written by a different config than "
                                  f"{self.run_dir / 'config.json'}; it cannot be resumed with it")
        check_checkpoint(ckpt, path, len(self.stream), self.stream.class_order, self.cfg.strategies)
        try:
            self.model = rebuild(ckpt["spec"]).to(self.device)
            self.model.load_state_dict(ckpt["model"])
            params = dict(self.model.named_parameters())
            for name in ckpt["frozen"]:  # trainability is the run's state, not the model's spec
                params[name].requires_grad_(False)
            if "probe" in ckpt:  # a growth re-measures the network; older checkpoints lack it
                self.probe = Probe(*ckpt["probe"])  # two counts (check_checkpoint)
            self.optimizer = make_optimizer(self.cfg, self.model)
            if self.optimizer is not None:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            for s in self.strategies:
                s.load_state_dict(ckpt["strategies"][s.name])
            self.generator.set_state(ckpt["rng"]["generator"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if self.device.type == "cuda" and "cuda" in ckpt["rng"]:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"checkpoint {path} does not match this run ({first})") from None
        self.ctx.model = self.model
        self.acc = [list(map(float, r)) for r in ckpt["acc"]]
        self.random_acc = list(map(float, ckpt["random_acc"]))
        self.stats = list(ckpt["stats"])
        self.peak_memory = dict(ckpt["peak_memory"])
        self.next_experience = int(ckpt["next_experience"])
        self.elapsed_before = elapsed_before(ckpt)
        # A run killed after its checkpoint but before its outputs (e.g. while the final plot was
        # drawn) gets them back: the table here, metrics.json and the plot when run() ends.
        write_acc_csv(self.run_dir / "acc_matrix.csv", self.acc, len(self.stream))

    # -- the loop -----------------------------------------------------------------------------
    def run(self, plot: str = "inline") -> RunResult:
        start = self._run_start = time.perf_counter()
        self.reporter.before_training(planned_steps(self.cfg, self.stream, self.next_experience),
                                      len(self.stream) - self.next_experience)
        while self.next_experience < len(self.stream):
            self.learn_experience(self.stream.experiences[self.next_experience])
        return self.result(self.elapsed_before + time.perf_counter() - start, plot)

    def learn_experience(self, exp: Experience) -> None:
        cfg, ctx, t0 = self.cfg, self.ctx, time.perf_counter()
        ctx.experience = exp.index
        names = dict(self.model.named_parameters())  # before strategies and growth change them
        for s in self.strategies:
            s.before_experience(ctx, exp)
        model = self.model
        for s in self.strategies:
            model = s.adapt_model(ctx, model, exp)
        changed = model.adapt(exp) or model is not self.model
        if cfg.freeze_backbone_after is not None and exp.index >= cfg.freeze_backbone_after:
            model.freeze_backbone()
        if (changed or self.optimizer is None or cfg.optimizer_state == "reset"
                or self._trainable_changed(model)):
            old = self.optimizer
            self.model = ctx.model = model.to(self.device)
            self.optimizer = make_optimizer(cfg, self.model)
            if old is not None and cfg.optimizer_state == "keep":
                carry_optimizer_state(old, names, self.optimizer, self.model)
        own = exp.train_data()
        for s in self.strategies:
            own = s.holdout(ctx, exp, own)
        data = own
        for s in self.strategies:
            data = s.training_data(ctx, exp, data)
        steps, flops, loss = self._train(exp, data)
        whitened = {}
        if cfg.whiten is not None and exp.index == cfg.freeze_backbone_after - 1:
            whitened = {"whiten": self._fit_whiten(own)}  # before the heads refit through it
        for s in self.strategies:
            s.after_experience(ctx, exp, own)
        row = evaluate_all(self.model, self.stream, cfg)
        self.acc.append(row)
        memory = measure_memory(self.model, self.optimizer, self.strategies,
                                self.probe.activation_bytes * self.rows)
        for k, v in memory.items():
            self.peak_memory[k] = max(v, self.peak_memory.get(k, 0))
        self.stats.append({"experience": exp.index, "classes": list(exp.classes), "steps": steps,
                           "flops": flops, "samples": len(data), "loss": loss,
                           "seconds": time.perf_counter() - t0, "peak_rss_bytes": _rss_bytes(),
                           **whitened,
                           **({"peak_cuda_bytes": torch.cuda.max_memory_allocated(self.device)}
                              if self.device.type == "cuda" else {})})
        self.next_experience = exp.index + 1
        self.reporter.end_experience(row, exp.index + 1)
        if self.run_dir is not None:
            self._save(exp.index)

    @torch.no_grad()
    def _fit_whiten(self, data: Batch) -> dict:
        """Fit ``--whiten`` on the backbone's features of ``data`` (:mod:`edgelll.runtime.whiten`,
        numpy float64, the same fit a device runs), install it in the model, and return the
        shrinkage and, under ``auto``, the validation scores that chose it."""
        from .runtime.whiten import fit_whitening
        from .strategies.replay import embed

        layer = self.model.whiten
        layer.set(torch.zeros_like(layer.mean), torch.eye(len(layer.mean)), float("nan"))
        feats = embed(self.model, data.x).cpu().numpy()  # the identity map: the raw features
        fit = fit_whitening(feats, data.y.cpu().numpy(), self.cfg.whiten,
                            shots=self.cfg.shots or 5, seed=self.cfg.seed)
        layer.set(fit.mean, fit.proj, fit.shrink)
        return {"shrink": fit.shrink, "scores": fit.scores}

    def _trainable_changed(self, model: nn.Module) -> bool:
        """True when a strategy froze or unfroze parameters since the optimizer was built."""
        held = set() if self.optimizer is None else {
            id(p) for group in self.optimizer.param_groups for p in group["params"]}
        return held != {id(p) for p in model.parameters() if p.requires_grad}

    def _step_budget(self, n: int) -> int:
        """Steps the experience runs unless --compute-flops stops it first."""
        cfg = self.cfg
        total = cfg.steps or cfg.epochs * math.ceil(n / cfg.batch_size)
        return total if cfg.compute_steps is None else min(total, cfg.compute_steps)

    def _train(self, exp: Experience, data: Batch) -> tuple[int, int, float]:
        cfg, ctx, model, opt = self.cfg, self.ctx, self.model, self.optimizer
        n, bs = len(data), cfg.batch_size
        total = self._step_budget(n)
        shown = total if self.flops_cap_steps is None else min(total, self.flops_cap_steps)
        self.reporter.start_experience(exp.index, len(self.stream), shown, exp.classes)
        closed_form = model.head.closed_form
        # Forward and backward cost 3 forward passes a row; a step without backward costs one.
        flops_per_row = (3 if opt is not None else 1) * self.probe.forward_flops
        steps = flops = 0
        loss = None
        loss_sum = torch.zeros((), device=self.device)
        model.train()
        epoch = -1
        while steps < total:
            epoch += 1  # from the second on, a closed-form head sees rows it has learned
            perm = torch.randperm(n, generator=self.generator).to(self.device)
            for start in range(0, n, bs):
                if steps >= total:
                    break
                idx = perm[start:start + bs]
                own = Batch(data.x[idx], data.y[idx], data.t[idx])
                batch = own
                for s in self.strategies:
                    batch = s.mix_batch(ctx, batch)
                step_flops = flops_per_row * len(batch) + sum(
                    s.step_flops(ctx, batch, self.probe.forward_flops) for s in self.strategies)
                if cfg.compute_flops is not None and flops + step_flops > cfg.compute_flops:
                    total = steps  # the next step would overrun the FLOP budget: stop here
                    break
                loss = self._step(model, opt, own, batch, closed_form, epoch > 0)
                if loss is not None:
                    loss_sum += loss
                steps += 1
                flops += step_flops
                if self._grown(exp, data, steps):  # a bigger network from the next step on
                    flops_per_row = (3 if opt is not None else 1) * self.probe.forward_flops
                if steps % 25 == 0:
                    self.reporter.advance(25, self._shown(loss))
        if steps % 25:
            self.reporter.advance(steps % 25, self._shown(loss))
        mean_loss = (loss_sum / max(1, steps)).item()
        if not math.isfinite(mean_loss):
            raise EdgelllError(f"training diverged on experience {exp.index} (loss {mean_loss}); "
                               f"lower the learning rate (lr) or a strategy's lambda")
        return steps, flops, mean_loss

    def _grown(self, exp: Experience, data: Batch, steps: int) -> bool:
        """Let a strategy grow the network (:meth:`Strategy.maybe_grow`); the others follow the
        growth, the probe measures the new network (FLOPs, activations) and its memory counts."""
        for s in self.strategies:
            start = time.perf_counter()
            growth = s.maybe_grow(self.ctx, exp, data, steps, self.optimizer)
            if growth is None:
                continue
            for other in self.strategies:
                other.after_growth(self.ctx, growth)
            first = self.stream.experiences[0]
            self.probe = probe(self.model, first.x_test[:1],
                               torch.zeros(1, dtype=torch.long, device=self.device))
            memory = measure_memory(self.model, self.optimizer, self.strategies,
                                    self.probe.activation_bytes * self.rows)
            for k, v in memory.items():
                self.peak_memory[k] = max(v, self.peak_memory.get(k, 0))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            s.growth_time(time.perf_counter() - start)
            return True
        return False

    def _shown(self, loss: torch.Tensor | None) -> float | None:
        """The loss for the progress display (a device sync, so only when something shows it)."""
        return loss.item() if loss is not None and self.reporter.console else None

    def _step(self, model, opt, own: Batch, batch: Batch, closed_form: bool, again: bool = False):
        """One training step; returns the detached loss, or None when nothing is trainable."""
        ctx = self.ctx
        with autocast(self.device, self.cfg.amp):
            feats = model.forward_features(batch.x)
            if closed_form:  # the experience's own rows only: replayed ones were counted before
                model.head.update(feats[: len(own)].detach(), own.y, own.t, again)
            if opt is None:
                return None
            logits = model.forward_head(feats, batch.t)
            loss = (self.task_loss.task_loss(ctx, batch, logits) if self.task_loss
                    else F.cross_entropy(logits.float(), batch.y))
            for s in self.strategies:
                extra = s.extra_loss(ctx, batch, logits)
                if extra is not None:
                    loss = loss + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for s in self.strategies:
            s.after_backward(ctx, batch)
        opt.step()
        for s in self.strategies:
            s.after_step(ctx, batch)
        return loss.detach()

    # -- outputs ------------------------------------------------------------------------------
    def metrics(self, seconds: float | None = None) -> dict:
        summary = M.summarize(self.acc, self.random_acc)
        memory = {"total": sum(self.peak_memory.values()), "components": dict(self.peak_memory),
                  "planned": {**self.planned, "total": sum(self.planned.values())},
                  "limit": self.cfg.memory}
        reports = {s.name: r for s in self.strategies if (r := s.report())}
        if self.cfg.stream == "fscil":  # experience i is session i (edgelll/fscil.py)
            summary["fscil"] = M.fscil_summary(self.acc, [int(e.y_test.numel())
                                                          for e in self.stream.experiences])
        return {"acc_matrix": self.acc, "random_init_acc": self.random_acc, **summary,
                **({"strategies": reports} if reports else {}),
                **({"whiten": {"shrink": float(self.model.whiten.shrink)
                               if self.model.whiten.fitted else None}}
                   if self.model.whiten is not None else {}),
                "resolved": resolved_values(self.strategies, self.cfg),  # e.g. replay.size
                "seconds": seconds if seconds is not None else sum(s["seconds"] for s in self.stats),
                "experiences": self.stats, "memory_bytes": memory,
                "complete": self.next_experience >= len(self.stream)}

    def _save(self, index: int) -> None:
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(checkpoint_path(self.run_dir, index), {
            "config": self.cfg.to_dict(), "spec": self.model.spec(),
            "model": self.model.state_dict(),
            "frozen": [k for k, p in self.model.named_parameters() if not p.requires_grad],
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            # the FLOPs and activations counted from here, as measured after the last growth
            "probe": [self.probe.activation_bytes, self.probe.forward_flops],
            "strategies": {s.name: s.state_dict() for s in self.strategies}, "rng": rng,
            "acc": self.acc, "random_acc": self.random_acc, "stats": self.stats,
            "peak_memory": self.peak_memory, "next_experience": index + 1,
            "class_order": self.stream.class_order,
            "elapsed": self.elapsed_before + time.perf_counter() - self._run_start})
        m = self.metrics()
        write_json(self.run_dir / "metrics.json", m)
        write_acc_csv(self.run_dir / "acc_matrix.csv", self.acc, len(self.stream))

    def result(self, seconds: float, plot: str = "inline") -> RunResult:
        """Write the final metrics and the plot (``plot``: inline | background | none, see
        :mod:`edgelll.plot_job`), print the summary, and return the run's result."""
        m, job = self.metrics(seconds), None
        if self.run_dir is not None:
            write_json(self.run_dir / "metrics.json", m)
            from .plot_job import draw_plot
            classes = [list(e.classes) for e in self.stream.experiences]
            job = draw_plot(self.run_dir, m, mode=plot, title=run_title(
                self.cfg.strategies, self.stream.dataset_name, self.cfg.stream, self.cfg.scenario,
                self.acc, classes))
        self.reporter.summary(m, m["memory_bytes"], self.run_dir)
        return RunResult(self.cfg, self.acc, self.random_acc,
                         {k: m[k] for k in ("acc", "bwt", "fwt", "forgetting", "acc_curve",
                                            "seconds", "fscil") if k in m},
                         m["memory_bytes"], self.stats, self.run_dir, self.model, self.strategies, job)


def new_model(cfg: LearnConfig, stream: Stream) -> nn.Module:
    """The run's model as it starts: the stream's first head, preprocessing its samples as stored,
    with the stream's class map and task routing in its spec."""
    first = stream.experiences[0]
    multi = cfg.scenario == "task"
    model = create_model(cfg.model, stream.input_shape,
                         first.n_local_classes if multi else first.head_size, multi_head=multi,
                         input={"dtype": dtype_name(stream.dtype), "layout": "nchw",
                                "mean": stream.mean, "std": stream.std}, **cfg.model_args)
    model.labels = stream.label_map()
    return model


def learn(cfg: LearnConfig, data=None, run_dir: str | Path | None = None, resume: bool = False,
          reporter: Reporter | None = None, plot: str = "inline") -> RunResult:
    """Train on the stream ``cfg`` describes and return the accuracy matrix, metrics and memory.

    ``data`` may be a :class:`~edgelll.data.Dataset` or ``(x_train, y_train, x_test, y_test)``
    arrays; without it ``cfg.data`` is loaded. With ``run_dir`` the run writes its config,
    checkpoints and metrics there; ``resume=True`` continues the run in ``run_dir``. ``plot``
    says when its ``accuracy.png`` is drawn: ``"inline"`` before returning, ``"background"`` by a
    detached process (``result.plot.wait()`` waits for it), or ``"none"``.
    """
    from .plot_job import check_plot_mode
    check_plot_mode(plot)  # before training, not after it
    return Learner(cfg, data, run_dir, resume, reporter).run(plot)

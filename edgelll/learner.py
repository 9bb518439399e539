"""The one learner loop: a stream of experiences, composable strategies, budgets, metrics and
crash-safe run directories.

For each experience: strategies prepare (``before_experience``, ``adapt_model``), the head makes
room for new classes, the optimiser is rebuilt if the parameters changed, and training runs whole
batches as tensors (``mix_batch`` -> forward -> ``extra_loss`` -> backward -> ``after_backward`` ->
step) until the epochs, ``steps`` or compute budget end it. Then ``after_experience``, a row of the
accuracy matrix over every experience (future ones too, for FWT), and an atomic checkpoint.
"""

from __future__ import annotations

import json
import math
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from . import metrics as M
from .batch import Batch
from .budget import measure_memory, plan_memory, probe, steps_for_flops
from .config import LearnConfig
from .data import Dataset, from_arrays, load_dataset
from .errors import CheckpointError, ConfigError, EdgelllError
from .models import create_model, rebuild
from .optim import SGD, Adam
from .report import Reporter
from .runs import (checkpoint_path, create_run_dir, latest_checkpoint, load_checkpoint,
                   remove_stale_temporaries, save_checkpoint, write_json)
from .strategies import Strategy, create_strategy
from .streams import Experience, Stream, make_stream

if TYPE_CHECKING:  # imported when used: `python -m edgelll.plot_job` must not find it loaded
    from .plot_job import PlotJob


@dataclass
class Context:
    """What strategies may read: the run's config, stream, current model, device and RNG."""

    cfg: LearnConfig
    stream: Stream
    model: nn.Module
    device: torch.device
    generator: torch.Generator
    experience: int = 0


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


def make_optimizer(cfg: LearnConfig, model: nn.Module) -> Adam | SGD:
    """edgelll's Adam or SGD: torch's results bit for bit, without importing torch._dynamo."""
    params = [p for p in model.parameters() if p.requires_grad]
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


@torch.no_grad()
def evaluate(model: nn.Module, stream: Stream, exp: Experience, batch_size: int,
             amp: bool = False) -> float:
    """Test accuracy on one experience; a sample whose task has no output units counts wrong."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=exp.y_test.device)
    t_all = torch.full_like(exp.y_test, exp.task_id)
    with _autocast(exp.x_test.device, amp):
        for start in range(0, exp.y_test.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            logits = model(stream.prepare(exp.x_test[sl]), t_all[sl] if stream.uses_task_ids else None)
            best, pred = logits.float().max(1)
            correct += ((pred == exp.y_test[sl]) & torch.isfinite(best)).sum()
    model.train(was_training)
    return correct.item() / max(1, exp.y_test.shape[0])


def evaluate_all(model, stream, cfg) -> list[float]:
    return [evaluate(model, stream, e, cfg.eval_batch_size, cfg.amp) for e in stream.experiences]


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


def _dataset(cfg: LearnConfig, data) -> Dataset:
    if data is None:
        return load_dataset(cfg.data)
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return from_arrays(*data)
    raise ConfigError("data must be a Dataset or (x_train, y_train, x_test, y_test) arrays")


def _same_config(stored, cfg: LearnConfig) -> bool:
    """True when a config dict from a run directory is ``cfg``. Settings added to edgelll after
    the run began take their defaults, so a run started by an older version still resumes."""
    if not isinstance(stored, dict):
        return False
    try:
        return LearnConfig.from_dict(stored).to_dict() == cfg.to_dict()
    except EdgelllError:
        return False


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
                                  cfg.class_order, cfg.seed, self.device)
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        first = self.stream.experiences[0]
        multi = cfg.scenario == "task"
        self.model = create_model(cfg.model, self.stream.input_shape,
                                  first.n_local_classes if multi else first.head_size,
                                  multi_head=multi, **cfg.model_args).to(self.device)
        self.strategies = [create_strategy(n, cfg.strategy_args.get(n, {})) for n in cfg.strategies]
        replacing = [s for s in self.strategies if s.replaces_loss()]
        if len(replacing) > 1:
            raise ConfigError(f"{replacing[0].name} and {replacing[1].name} each replace the "
                              f"cross-entropy loss; use one of them")
        self.task_loss = replacing[0] if replacing else None  # the strategy whose loss is used
        self.ctx = Context(cfg, self.stream, self.model, self.device, self.generator)
        sample = self.stream.prepare(first.x_test[:1])
        t1 = torch.zeros(1, dtype=torch.long, device=self.device) if self.stream.uses_task_ids else None
        self.probe = probe(self.model, sample, t1)
        with torch.random.fork_rng(devices=[]):
            self.planned, self.plan = plan_memory(self.model, self.stream, self.strategies, self.ctx,
                                                  cfg, self.probe.activation_bytes)
        self.rows = cfg.batch_size + sum(s.extra_rows(cfg.batch_size) for s in self.strategies)
        # At most this many full-batch steps fit --compute-flops (steps cost at least a batch's
        # forward and backward; strategies add theirs, counted exactly as the steps run).
        self.flops_cap_steps = steps_for_flops(cfg.compute_flops, self.probe.forward_flops,
                                               cfg.batch_size)
        self.random_acc = evaluate_all(self.model, self.stream, cfg)
        self.acc: list[list[float]] = []
        self.stats: list[dict] = []
        self.peak_memory: dict[str, int] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.next_experience = 0
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if resume:
            self._resume()
        elif self.run_dir is not None:
            create_run_dir(self.run_dir)
            write_json(self.run_dir / "config.json", cfg.to_dict())
            write_json(self.run_dir / "env.json", _env(self.device))

    # -- resume -------------------------------------------------------------------------------
    def _resume(self) -> None:
        if self.run_dir is None or not (self.run_dir / "config.json").is_file():
            raise CheckpointError(f"{self.run_dir} is not an edgelll run directory (no config.json)")
        remove_stale_temporaries(self.run_dir)
        path = latest_checkpoint(self.run_dir)
        if path is None:
            # Stopped during its first experience: nothing was completed, so the run starts over
            # in its own directory under the config it was created with.
            stored = json.loads((self.run_dir / "config.json").read_text())
            if not _same_config(stored, self.cfg):
                raise CheckpointError(f"{self.run_dir / 'config.json'} holds a different config; "
                                      f"it cannot be resumed with this one")
            (self.run_dir / "checkpoints").mkdir(exist_ok=True)
            return
        ckpt = load_checkpoint(path, map_location=self.device)
        if not _same_config(ckpt.get("config"), self.cfg):
            raise CheckpointError(f"checkpoint {path} was written by a different config than "
                                  f"{self.run_dir / 'config.json'}; it cannot be resumed with it")
        try:
            self.model = rebuild(ckpt["arch"], self.stream.input_shape).to(self.device)
            self.model.load_state_dict(ckpt["model"])
            self.optimizer = make_optimizer(self.cfg, self.model)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            for s in self.strategies:
                s.load_state_dict(ckpt["strategies"][s.name])
            self.generator.set_state(ckpt["rng"]["generator"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if self.device.type == "cuda" and "cuda" in ckpt["rng"]:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"checkpoint {path} does not match this run ({first})") from None
        self.ctx.model = self.model
        self.acc = [list(map(float, r)) for r in ckpt["acc"]]
        self.random_acc = list(map(float, ckpt["random_acc"]))
        self.stats = list(ckpt["stats"])
        self.peak_memory = dict(ckpt["peak_memory"])
        self.next_experience = int(ckpt["next_experience"])
        if self.next_experience >= len(self.stream):
            raise ConfigError(f"run {self.run_dir} is already complete; nothing to resume")

    # -- the loop -----------------------------------------------------------------------------
    def run(self, plot: str = "inline") -> RunResult:
        start = time.perf_counter()
        while self.next_experience < len(self.stream):
            self.learn_experience(self.stream.experiences[self.next_experience])
        return self.result(time.perf_counter() - start, plot)

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
                           **({"peak_cuda_bytes": torch.cuda.max_memory_allocated(self.device)}
                              if self.device.type == "cuda" else {})})
        self.next_experience = exp.index + 1
        self.reporter.end_experience(row, exp.index + 1)
        if self.run_dir is not None:
            self._save(exp.index)

    def _trainable_changed(self, model: nn.Module) -> bool:
        """True when a strategy froze or unfroze parameters since the optimizer was built."""
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
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
        use_t = self.stream.uses_task_ids
        flops_per_row = 3 * self.probe.forward_flops
        steps = flops = 0
        loss_sum = torch.zeros((), device=self.device)
        model.train()
        while steps < total:
            perm = torch.randperm(n, generator=self.generator).to(self.device)
            for start in range(0, n, bs):
                if steps >= total:
                    break
                idx = perm[start:start + bs]
                batch = Batch(data.x[idx], data.y[idx], data.t[idx])
                for s in self.strategies:
                    batch = s.mix_batch(ctx, batch)
                step_flops = flops_per_row * len(batch) + sum(
                    s.step_flops(ctx, batch, self.probe.forward_flops) for s in self.strategies)
                if cfg.compute_flops is not None and flops + step_flops > cfg.compute_flops:
                    total = steps  # the next step would overrun the FLOP budget: stop here
                    break
                x = self.stream.prepare(batch.x)
                with _autocast(self.device, cfg.amp):
                    logits = model(x, batch.t if use_t else None)
                    loss = (self.task_loss.task_loss(ctx, batch, x, logits) if self.task_loss
                            else F.cross_entropy(logits.float(), batch.y))
                    for s in self.strategies:
                        extra = s.extra_loss(ctx, batch, x, logits)
                        if extra is not None:
                            loss = loss + extra
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for s in self.strategies:
                    s.after_backward(ctx, batch)
                opt.step()
                for s in self.strategies:
                    s.after_step(ctx, batch)
                loss_sum += loss.detach()
                steps += 1
                flops += step_flops
                if steps % 25 == 0:
                    self.reporter.advance(25, loss.item() if self.reporter.console else None)
        if steps % 25:
            self.reporter.advance(steps % 25, loss.item() if self.reporter.console else None)
        mean_loss = (loss_sum / max(1, steps)).item()
        if not math.isfinite(mean_loss):
            raise EdgelllError(f"training diverged on experience {exp.index} (loss {mean_loss}); "
                               f"lower --lr or a strategy's lambda")
        return steps, flops, mean_loss

    # -- outputs ------------------------------------------------------------------------------
    def metrics(self, seconds: float | None = None) -> dict:
        summary = M.summarize(self.acc, self.random_acc)
        memory = {"total": sum(self.peak_memory.values()), "components": dict(self.peak_memory),
                  "planned": {**self.planned, "total": sum(self.planned.values())},
                  "limit": self.cfg.memory}
        reports = {s.name: r for s in self.strategies if (r := s.report())}
        return {"acc_matrix": self.acc, "random_init_acc": self.random_acc, **summary,
                **({"strategies": reports} if reports else {}),
                "seconds": seconds if seconds is not None else sum(s["seconds"] for s in self.stats),
                "experiences": self.stats, "memory_bytes": memory,
                "complete": self.next_experience >= len(self.stream)}

    def _save(self, index: int) -> None:
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(checkpoint_path(self.run_dir, index), {
            "config": self.cfg.to_dict(), "arch": self.model.arch(),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "strategies": {s.name: s.state_dict() for s in self.strategies}, "rng": rng,
            "acc": self.acc, "random_acc": self.random_acc, "stats": self.stats,
            "peak_memory": self.peak_memory, "next_experience": index + 1,
            "class_order": self.stream.class_order})
        m = self.metrics()
        write_json(self.run_dir / "metrics.json", m)
        _write_csv(self.run_dir / "acc_matrix.csv", self.acc, len(self.stream))

    def result(self, seconds: float, plot: str = "inline") -> RunResult:
        """Write the final metrics and the plot (``plot``: inline | background | none, see
        :mod:`edgelll.plot_job`), print the summary, and return the run's result."""
        m, job = self.metrics(seconds), None
        if self.run_dir is not None:
            write_json(self.run_dir / "metrics.json", m)
            from .plot_job import draw_plot
            job = draw_plot(self.run_dir, m, mode=plot, title=f"{'+'.join(self.cfg.strategies)} on "
                            f"{self.stream.dataset_name} ({self.cfg.stream}, {self.cfg.scenario} scenario)")
        self.reporter.summary(m, m["memory_bytes"], self.run_dir)
        return RunResult(self.cfg, self.acc, self.random_acc,
                         {k: m[k] for k in ("acc", "bwt", "fwt", "forgetting", "acc_curve", "seconds")},
                         m["memory_bytes"], self.stats, self.run_dir, self.model, self.strategies, job)


def _write_csv(path: Path, acc: list[list[float]], n: int) -> None:
    from .runs import write_text
    header = "after_experience," + ",".join(f"exp{j}" for j in range(n))
    lines = [header] + [f"{i}," + ",".join(f"{a:.6f}" for a in row) for i, row in enumerate(acc)]
    write_text(path, "\n".join(lines) + "\n")


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

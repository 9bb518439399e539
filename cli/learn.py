"""``edgelll learn``: parse options, resolve the config, call :func:`edgelll.learn`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edgelll.config import LearnConfig, load_config_file, parse_sets, resolve
from edgelll.errors import ConfigError

from .common import RUN, handle_errors

_DEFAULTS = LearnConfig()
# What a default of None means, where "none" alone would not say it.
_NONE_MEANS = {"base_classes": "the classes the sessions leave", "memory": "no cap", "compute_steps": "no cap", "compute_flops": "no cap",
               "steps": "from --epochs", "threads": "torch's choice"}


def _shown(name: str) -> str:
    """The default of a LearnConfig field as --help shows it (one source: ``LearnConfig()``)."""
    value = getattr(_DEFAULTS, name)
    if value is None:
        return _NONE_MEANS.get(name, "none")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(f"-s {v}" for v in value) if name == "strategies" else ",".join(map(str, value))
    return str(value)


def Opt(*names, field: str | None = None, **kwargs):
    """A Typer option whose default of None means "not given" (so config files and --set can
    fill it), while --help shows the default the run will use."""
    if field is not None:
        kwargs["show_default"] = _shown(field)
    return typer.Option(*names, **kwargs)


def _run_name(cfg) -> str:
    data = cfg.data.split("=", 1)[0] if "=" in cfg.data else Path(cfg.data).stem or cfg.data
    return f"{'+'.join(cfg.strategies)}-{data}-{cfg.stream}-{cfg.scenario}"


def _resume_config(resume: Path, given: dict, other: bool):
    """The config to continue ``resume`` with: its own config.json, and ``--threads`` when given
    (it changes speed, not what is learned; --quiet and --debug change only the output)."""
    if other or set(given) - {"threads"}:
        raise ConfigError("--resume continues a run with its own config.json; drop the other "
                          "options except --threads, --quiet and --debug (or start a new run "
                          "without --resume)")
    from edgelll.runs import is_skeleton

    if not (resume / "config.json").is_file():
        if resume.is_dir() and (resume / ".lock").exists() and is_skeleton(resume):
            raise ConfigError(f"{resume} has no config.json: it was stopped before its run "
                              f"began; start it again with --out {resume}")
        raise ConfigError(f"{resume} is not an edgelll run directory (no config.json)")
    try:
        return resolve(load_config_file(resume / "config.json"), given)
    except ConfigError as exc:
        if str(exc).startswith("threads") and "threads" not in given:
            raise ConfigError(f"{exc}; resume with --threads N to use fewer") from None
        raise


def _progress_interval() -> float:
    """Seconds between progress lines when stdout is a log (EDGELLL_PROGRESS_SECONDS, default 5)."""
    raw = os.environ.get("EDGELLL_PROGRESS_SECONDS", "5")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigError(f"EDGELLL_PROGRESS_SECONDS must be a number of seconds, got {raw!r}") from None


@handle_errors
def learn_command(
    data: Annotated[Optional[str], Opt(field="data", help="digits (embedded), mnist=PATH, fashion-mnist=PATH, omniglot=PATH, or a .npz file / IDX folder")] = None,
    layout: Annotated[Optional[str], Opt(field="layout", help="4-D images: auto (detect) | nchw | nhwc (channels last)")] = None,
    stream: Annotated[Optional[str], Opt(field="stream", help="split | permuted | rotated | fscil (few-shot class-incremental sessions)")] = None,
    scenario: Annotated[Optional[str], Opt(field="scenario", help="class | task | domain (van de Ven & Tolias 2019)")] = None,
    tasks: Annotated[Optional[int], Opt(field="tasks", help="number of experiences in the stream (split, permuted, rotated; fscil has --sessions + 1)")] = None,
    class_order: Annotated[Optional[str], Opt(field="class_order", help="natural | random (seeded) | labels like 3,1,4,...")] = None,
    base_classes: Annotated[Optional[int], Opt(field="base_classes", help="fscil: classes of the base session, with all their data")] = None,
    ways: Annotated[Optional[int], Opt(field="ways", help="fscil: new classes per incremental session")] = None,
    shots: Annotated[Optional[int], Opt(field="shots", help="fscil: training samples per new class (a seeded choice)")] = None,
    sessions: Annotated[Optional[int], Opt(field="sessions", help="fscil: incremental sessions after the base session")] = None,
    model: Annotated[Optional[str], Opt(field="model", help="network from `edgelll list models`")] = None,
    strategy: Annotated[Optional[list[str]], Opt("--strategy", "-s", field="strategies", help="repeat to compose, e.g. -s replay -s ewc")] = None,
    memory: Annotated[Optional[str], Opt(field="memory", help="cap on the learner's whole state, e.g. 4MiB, 512KiB")] = None,
    compute: Annotated[Optional[int], Opt(field="compute_steps", help="at most this many optimiser steps per experience")] = None,
    compute_flops: Annotated[Optional[float], Opt(field="compute_flops", help="at most this many estimated training FLOPs per experience")] = None,
    epochs: Annotated[Optional[int], Opt(field="epochs", help="passes over each experience's data")] = None,
    steps: Annotated[Optional[int], Opt(field="steps", help="exact optimiser steps per experience (overrides --epochs)")] = None,
    batch_size: Annotated[Optional[int], Opt(field="batch_size", help="training batch size")] = None,
    lr: Annotated[Optional[float], Opt(field="lr", help="learning rate")] = None,
    optimizer: Annotated[Optional[str], Opt(field="optimizer", help="adam | sgd")] = None,
    optimizer_state: Annotated[Optional[str], Opt(field="optimizer_state", help="between experiences: auto (fresh when parameters change) | keep | reset")] = None,
    freeze_backbone_after: Annotated[Optional[int], Opt(field="freeze_backbone_after", help="freeze the backbone from this experience on (0: from the start), e.g. under -s ncm")] = None,
    whiten: Annotated[Optional[str], Opt(field="whiten", help="whiten the frozen features by the within-class spread of the first experience: auto | a shrinkage >= 0 (with --freeze-backbone-after 1 and ncm, hebbian, competitive or neural-gas)")] = None,
    device: Annotated[Optional[str], Opt(field="device", help="auto | cpu | cuda")] = None,
    amp: Annotated[Optional[bool], Opt("--amp/--no-amp", field="amp", help="bf16 mixed precision")] = None,
    threads: Annotated[Optional[int], Opt(field="threads", help="CPU threads for torch")] = None,
    device_profile: Annotated[Optional[str], Opt(help="apply a device profile's memory budget and threads (edgelll list devices, or a .toml file); --memory and --threads win")] = None,
    seed: Annotated[Optional[int], Opt(field="seed", help="random seed")] = None,
    out: Annotated[Optional[Path], Opt(help="run directory (default runs/learn/<name>, numbered if taken)")] = None,
    resume: Annotated[Optional[Path], Opt(help="continue the run in this directory after its last checkpoint")] = None,
    config: Annotated[Optional[Path], Opt(help="TOML or JSON file of settings (same keys as config.json)")] = None,
    set_: Annotated[Optional[list[str]], Opt("--set", help="KEY=VALUE for any setting, model or strategy parameter, e.g. replay.size=2000")] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="no progress or summary; only the run directory, as one line on stderr")] = False,
    plot: Annotated[str, Opt(help="when accuracy.png is drawn: background (a detached process; the run ends without waiting for matplotlib) | inline | none")] = "background",
    debug: Annotated[bool, Opt("--debug", help="show the traceback on errors")] = False,
) -> None:
    """Train a model on a stream of tasks, one after another, without forgetting."""
    from edgelll.learner import learn
    from edgelll.report import Reporter
    from edgelll.runs import check_new_run_dir, unique_run_dir

    given = {"data": data, "layout": layout, "stream": stream, "scenario": scenario, "tasks": tasks,
             "class_order": class_order, "base_classes": base_classes, "ways": ways,
             "shots": shots, "sessions": sessions, "model": model, "strategies": strategy, "memory": memory,
             "compute_steps": compute, "compute_flops": compute_flops, "epochs": epochs,
             "steps": steps, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
             "optimizer_state": optimizer_state, "freeze_backbone_after": freeze_backbone_after,
             "whiten": whiten, "device": device, "amp": amp, "threads": threads, "device_profile": device_profile,
             "seed": seed}
    given = {k: v for k, v in given.items() if v is not None}
    if resume is not None:
        cfg = _resume_config(resume, given, bool(config or set_ or out))
        run_dir = resume
    else:
        layers = [load_config_file(config)] if config else []
        cfg = resolve(*layers, given, overrides=parse_sets(set_ or []))
        run_dir = out if out is not None else unique_run_dir(Path("runs") / "learn", _run_name(cfg))
        check_new_run_dir(run_dir)
    reporter = (Reporter(None, announce=sys.stderr) if quiet
                else Reporter(Console(stderr=False), interval=_progress_interval()))
    RUN["dir"] = run_dir
    learn(cfg, run_dir=run_dir, resume=resume is not None, reporter=reporter, plot=plot)

"""``edgelll learn``: parse options, resolve the config, call :func:`edgelll.learn`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edgelll.config import load_config_file, parse_sets, resolve
from edgelll.errors import ConfigError
from edgelll.runs import check_new_run_dir, unique_run_dir

from .common import handle_errors

Opt = typer.Option


def _run_name(cfg) -> str:
    data = cfg.data.split("=", 1)[0] if "=" in cfg.data else Path(cfg.data).stem or cfg.data
    return f"{'+'.join(cfg.strategies)}-{data}-{cfg.stream}-{cfg.scenario}"


@handle_errors
def learn_command(
    data: Annotated[Optional[str], Opt(help="digits (embedded), mnist=PATH, fashion-mnist=PATH, or a .npz file / IDX folder")] = None,
    stream: Annotated[Optional[str], Opt(help="split | permuted | rotated")] = None,
    scenario: Annotated[Optional[str], Opt(help="class | task | domain (van de Ven & Tolias 2019)")] = None,
    tasks: Annotated[Optional[int], Opt(help="number of experiences in the stream")] = None,
    class_order: Annotated[Optional[str], Opt(help="natural | random (seeded) | labels like 3,1,4,...")] = None,
    model: Annotated[Optional[str], Opt(help="network from `edgelll list models`")] = None,
    strategy: Annotated[Optional[list[str]], Opt("--strategy", "-s", help="repeat to compose, e.g. -s replay -s ewc")] = None,
    memory: Annotated[Optional[str], Opt(help="cap on the learner's whole state, e.g. 4MiB, 512KiB")] = None,
    compute: Annotated[Optional[int], Opt(help="at most this many optimiser steps per experience")] = None,
    compute_flops: Annotated[Optional[float], Opt(help="at most this many estimated training FLOPs per experience")] = None,
    epochs: Annotated[Optional[int], Opt(help="passes over each experience's data")] = None,
    steps: Annotated[Optional[int], Opt(help="exact optimiser steps per experience (overrides --epochs)")] = None,
    batch_size: Annotated[Optional[int], Opt(help="training batch size")] = None,
    lr: Annotated[Optional[float], Opt(help="learning rate")] = None,
    optimizer: Annotated[Optional[str], Opt(help="adam | sgd")] = None,
    optimizer_state: Annotated[Optional[str], Opt(help="between experiences: auto (fresh when parameters change) | keep | reset")] = None,
    device: Annotated[Optional[str], Opt(help="auto | cpu | cuda")] = None,
    amp: Annotated[Optional[bool], Opt("--amp/--no-amp", help="bf16 mixed precision")] = None,
    threads: Annotated[Optional[int], Opt(help="CPU threads for torch")] = None,
    seed: Annotated[Optional[int], Opt(help="random seed")] = None,
    out: Annotated[Optional[Path], Opt(help="run directory (default runs/learn/<name>, numbered if taken)")] = None,
    resume: Annotated[Optional[Path], Opt(help="continue the run in this directory after its last checkpoint")] = None,
    config: Annotated[Optional[Path], Opt(help="TOML or JSON file of settings (same keys as config.json)")] = None,
    set_: Annotated[Optional[list[str]], Opt("--set", help="KEY=VALUE for any setting, model or strategy parameter, e.g. replay.size=2000")] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="no progress bars or summary")] = False,
    plot: Annotated[str, Opt(help="when accuracy.png is drawn: background (a detached process; the run ends without waiting for matplotlib) | inline | none")] = "background",
    debug: Annotated[bool, Opt("--debug", help="show the traceback on errors")] = False,
) -> None:
    """Train a model on a stream of tasks, one after another, without forgetting."""
    from edgelll.learner import learn
    from edgelll.report import Reporter

    given = {"data": data, "stream": stream, "scenario": scenario, "tasks": tasks,
             "class_order": class_order, "model": model, "strategies": strategy, "memory": memory,
             "compute_steps": compute, "compute_flops": compute_flops, "epochs": epochs,
             "steps": steps, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
             "optimizer_state": optimizer_state,
             "device": device, "amp": amp, "threads": threads, "seed": seed}
    given = {k: v for k, v in given.items() if v is not None}
    if resume is not None:
        if given or config or set_ or out:
            raise ConfigError("--resume continues a run with its own config.json; drop the other "
                              "options (or start a new run without --resume)")
        if not (resume / "config.json").is_file():
            raise ConfigError(f"{resume} is not an edgelll run directory (no config.json)")
        cfg = resolve(load_config_file(resume / "config.json"))
        run_dir = resume
    else:
        layers = [load_config_file(config)] if config else []
        cfg = resolve(*layers, given, overrides=parse_sets(set_ or []))
        run_dir = out if out is not None else unique_run_dir(Path("runs") / "learn", _run_name(cfg))
        check_new_run_dir(run_dir)
    console = None if quiet else Console(stderr=False)
    learn(cfg, run_dir=run_dir, resume=resume is not None, reporter=Reporter(console), plot=plot)

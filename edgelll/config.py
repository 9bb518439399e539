"""Run configuration: one frozen dataclass, resolved one way and checked in one place.

Values flow defaults -> config file (TOML or JSON) -> command-line options -> ``--set key=value``.
``LearnConfig.to_dict()`` is what ``config.json`` holds, and ``LearnConfig.from_dict`` reads it
back to an equal config, so a run directory always says exactly what ran.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, unknown_name
from .values import (MAX_COUNT, check_number, coerce, format_bytes, is_none,  # noqa: F401
                     parse_size)

STREAMS = ("split", "permuted", "rotated", "fscil")
SCENARIOS = ("class", "task", "domain")
OPTIMIZERS = ("adam", "sgd")
OPTIMIZER_STATES = ("auto", "keep", "reset")
DEVICES = ("auto", "cpu", "cuda")
LAYOUTS = ("auto", "nchw", "nhwc")
@dataclass(frozen=True)
class LearnConfig:
    """Everything a learning run needs; library functions take this, never CLI types."""

    data: str = "digits"
    layout: str = "auto"  # 4-D images: nchw | nhwc (channels last, numpy's usual) | auto (detect)
    stream: str = "split"
    scenario: str = "class"
    tasks: int = 5
    class_order: str = "natural"  # natural | random (seeded) | comma-separated labels
    # The fscil stream (edgelll/fscil.py): a base session of base_classes classes (None: those the
    # sessions leave, or a data set's whole base pool), then `sessions` sessions of `ways` new
    # classes with `shots` training samples each; `tasks` is then unused.
    base_classes: int | None = None
    ways: int = 1
    shots: int = 5
    sessions: int = 5
    model: str = "mlp"
    model_args: dict = field(default_factory=dict)
    strategies: tuple[str, ...] = ("replay",)
    strategy_args: dict = field(default_factory=dict)  # {strategy: {param: value}}
    memory: int | None = None  # bytes
    compute_steps: int | None = None  # optimiser steps per experience, at most
    compute_flops: float | None = None  # estimated training FLOPs per experience, at most
    epochs: int = 10
    steps: int | None = None  # exact optimiser steps per experience (overrides epochs)
    batch_size: int = 32
    eval_batch_size: int = 2048
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    # Between experiences: auto = a fresh optimizer when the trainable parameters change (a head
    # grows), else kept; keep = always carried over (grown rows start at zero); reset = always fresh.
    optimizer_state: str = "auto"
    # Freeze the backbone from this experience on (0: from the start; None: never). With a
    # closed-form head (ncm) and a frozen backbone, nothing is backpropagated.
    freeze_backbone_after: int | None = None
    # Whiten the frozen features by the within-class spread of the first experience, which alone
    # trains the backbone (edgelll.runtime.whiten): "auto" chooses the shrinkage on that data, a
    # number >= 0 sets it, None: no whitening. For the closed-form heads, freeze_backbone_after 1.
    whiten: float | str | None = None
    device: str = "auto"
    amp: bool = False
    threads: int | None = None
    # The device profile (edgelll list devices, or a .toml path) whose memory budget and threads
    # were applied: a record of where they came from; memory and threads hold the values.
    device_profile: str | None = None
    seed: int = 0
    checkpoints: bool = True

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["strategies"] = list(self.strategies)
        return json.loads(json.dumps(out))  # tuples become lists: exactly what config.json holds

    @classmethod
    def from_dict(cls, raw: dict) -> LearnConfig:
        return resolve(overrides=raw)


_FIELDS = {f.name: f for f in dataclasses.fields(LearnConfig)}


def parse_sets(items: list[str] | tuple[str, ...]) -> dict:
    """``["replay.size=2000", "lr=0.01"]`` -> ``{"replay": {"size": "2000"}, "lr": "0.01"}``;
    ``model.KEY=VALUE`` goes to ``{"model_args": {KEY: VALUE}}``."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE (e.g. --set replay.size=2000), got {item!r}")
        scope, dot, param = key.strip().partition(".")
        if dot:
            # model.KEY goes to model_args: "model" itself is also a setting (--set model=convnet).
            out.setdefault("model_args" if scope == "model" else scope, {})[param] = value
        else:
            out[scope] = value
    return out


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would never end
        raise ConfigError(f"config file {path} is not a regular file; pass a .toml or .json file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a .toml or .json file")
    try:
        text = path.read_text()
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10: the tomli backport (a dependency there)
                import tomli as tomllib
            raw = tomllib.loads(text)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    return raw


def _device_profile_layer(layers: tuple[dict, ...]) -> list[dict]:
    """The settings a ``device_profile`` (the last layer naming one wins) applies, as a layer under
    all the others so that an explicit memory or threads wins: its learner memory budget and its
    threads, capped at this machine's cores with an :class:`EdgelllWarning` unless a layer sets
    threads. When later layers set both already (a run's own config.json, on resume), the profile
    is not read again."""
    named = [layer["device_profile"] for layer in layers if "device_profile" in layer]
    if not named or is_none(named[-1]):
        return []
    if not isinstance(named[-1], str):
        raise ConfigError(f"device_profile must be a profile name (edgelll list devices) or a "
                          f".toml path, got {named[-1]!r}")
    if all(any(key in layer for layer in layers) for key in ("memory", "threads")):
        return []
    import warnings

    from .devices_catalog import device_profile, learn_settings
    from .errors import EdgelllWarning

    layer, warning = learn_settings(device_profile(named[-1]))
    if warning is not None and not any("threads" in layer for layer in layers):
        warnings.warn(warning, EdgelllWarning, stacklevel=3)
    return [layer]


def resolve(*layers: dict, overrides: dict | None = None) -> LearnConfig:
    """Merge layers of raw settings (later wins) into a checked :class:`LearnConfig`.

    A layer may hold top-level fields, ``model_args``/``strategy_args`` tables, and tables named
    ``model`` or after a strategy (the ``--set model.hidden=...`` and ``--set ewc.lam=...`` form).
    """
    from .strategies import STRATEGIES, strategy_params
    from .models import model_params

    values: dict = {}
    model_args: dict = {}
    strategy_args: dict = {}
    layers = (*layers, overrides or {})
    for layer in (*_device_profile_layer(layers), *layers):
        for key, value in layer.items():
            if key in ("model_args", "model") and isinstance(value, dict):
                model_args.update(value)
            elif key == "strategy_args" and isinstance(value, dict):
                for name, params in value.items():
                    strategy_args.setdefault(name, {}).update(params)
            elif key in STRATEGIES and isinstance(value, dict):
                strategy_args.setdefault(key, {}).update(value)
            elif key in _FIELDS and key not in ("model_args", "strategy_args"):
                values[key] = value
            else:
                known = [*(_FIELDS), "model", *STRATEGIES]
                raise ConfigError(unknown_name("setting", key, known))
    base = LearnConfig()
    for key, value in list(values.items()):
        default = getattr(base, key)
        if key == "memory":
            values[key] = parse_size(value)
        elif key in ("compute_steps", "threads", "steps", "freeze_backbone_after", "base_classes"):
            values[key] = None if is_none(value) else coerce(key, value, 0)
        elif key == "device_profile":
            values[key] = None if is_none(value) else value
        elif key == "whiten":
            values[key] = _whiten_value(value)
        elif key == "compute_flops":
            values[key] = None if is_none(value) else coerce(key, value, 0.0)
        elif key == "strategies":
            if not isinstance(value, (str, list, tuple)):
                raise ConfigError(f"strategies must be a name or a list of names, got {value!r}")
            items = [value] if isinstance(value, str) else list(value)
            values[key] = tuple(s.strip() for item in items for s in str(item).split(",") if s.strip())
        else:
            values[key] = coerce(key, value, default)
    cfg_model = values.get("model", base.model)
    defaults = model_params(cfg_model)
    for key in model_args:
        if key not in defaults:
            raise ConfigError(unknown_name(f"parameter of model {cfg_model!r}", key, defaults))
    values["model_args"] = {k: coerce(f"model.{k}", v, defaults[k]) for k, v in model_args.items()}
    for k, v in values["model_args"].items():
        check_number(f"model.{k}", v)
    names = values.get("strategies", base.strategies)
    for name in names:
        if name not in STRATEGIES:
            raise ConfigError(unknown_name("strategy", name, STRATEGIES))
    for name in strategy_args:
        if name not in names:
            raise ConfigError(f"settings given for strategy {name!r}, which is not in this run "
                              f"(strategies: {', '.join(names)}); add --strategy {name}")
    values["strategy_args"] = {name: strategy_params(name, strategy_args.get(name, {}))
                               for name in names}
    cfg = LearnConfig(**values)
    check(cfg)
    return cfg


def check(cfg: LearnConfig) -> None:
    """Refuse a config that cannot run, with one line saying what to change."""
    for name, allowed in (("stream", STREAMS), ("scenario", SCENARIOS), ("optimizer", OPTIMIZERS),
                          ("optimizer_state", OPTIMIZER_STATES), ("layout", LAYOUTS)):
        if getattr(cfg, name) not in allowed:
            raise ConfigError(unknown_name(name, getattr(cfg, name), allowed))
    if cfg.device not in DEVICES:  # a device profile's name gets a line of its own
        from .devices_catalog import device_option_message
        raise ConfigError(device_option_message(cfg.device))
    positive = {"tasks": cfg.tasks, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                "eval_batch_size": cfg.eval_batch_size, "ways": cfg.ways, "shots": cfg.shots,
                "sessions": cfg.sessions}
    for opt in ("compute_steps", "steps", "threads", "base_classes"):
        if getattr(cfg, opt) is not None:
            positive[opt] = getattr(cfg, opt)
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
        if value > MAX_COUNT:
            raise ConfigError(f"{name} must be at most {MAX_COUNT}, got {value:.3g}")
    if cfg.device_profile is not None and not (isinstance(cfg.device_profile, str)
                                                and cfg.device_profile.strip()):
        raise ConfigError(f"device_profile must be a profile name (edgelll list devices), got "
                          f"{cfg.device_profile!r}")
    cores = os.cpu_count() or 1
    if cfg.threads is not None and cfg.threads > cores:
        raise ConfigError(f"threads must be at most {cores}, the CPU cores of this machine, got "
                          f"{cfg.threads}")
    if not 0 <= cfg.seed < 2**64:  # what torch's and numpy's generators take
        raise ConfigError(f"seed must be from 0 to 2**64-1, got {cfg.seed}")
    if cfg.freeze_backbone_after is not None and not 0 <= cfg.freeze_backbone_after <= MAX_COUNT:
        raise ConfigError(f"freeze_backbone_after must be 0 or more experiences, got "
                          f"{cfg.freeze_backbone_after}")
    if cfg.whiten is not None:
        _check_whiten(cfg)
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ConfigError(f"lr must be a positive number, got {cfg.lr}")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.compute_flops is not None and not (0 < cfg.compute_flops < math.inf):
        raise ConfigError(f"compute_flops must be positive, got {cfg.compute_flops}")
    if not cfg.strategies:
        raise ConfigError("no strategy given; use --strategy naive for plain fine-tuning")
    if len(set(cfg.strategies)) != len(cfg.strategies):
        raise ConfigError(f"a strategy is named twice in {', '.join(cfg.strategies)}")
    if cfg.stream == "fscil" and cfg.scenario != "class":
        raise ConfigError(f"the fscil stream is class-incremental (one growing head, no task id); "
                          f"use --scenario class, not {cfg.scenario}")
    if "progressive" in cfg.strategies and cfg.scenario != "task":
        raise ConfigError(f"progressive picks each sample's column by its task id, and the "
                          f"{cfg.scenario} scenario gives none at test time; use --scenario task")
    if "progressive" in cfg.strategies and "independent" in cfg.strategies:
        raise ConfigError("progressive and independent each give every task its own network; "
                          "drop one of them")
    if "independent" in cfg.strategies and cfg.scenario == "domain":
        raise ConfigError("independent (one model per task) needs task ids or disjoint classes; "
                          "use --scenario task or class")


WHITEN_HEADS = ("ncm", "hebbian", "competitive", "neural-gas")  # heads that learn in closed form


def _whiten_value(value):
    """``whiten`` from a file, ``--set`` or the CLI: "auto", a shrinkage >= 0, or None."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().lower() in ("none", "null", "off", ""):
        return None
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise ConfigError(f"whiten must be auto or a shrinkage >= 0 (e.g. 0.3), got {value!r}")
    return number


def _check_whiten(cfg) -> None:
    if cfg.freeze_backbone_after != 1:
        raise ConfigError(f"whiten is fitted on the first experience's features (the base "
                          f"session) once the backbone that made them stops training, so that "
                          f"the head learns every class in the whitened space; give "
                          f"--freeze-backbone-after 1 (got {cfg.freeze_backbone_after})")
    if "slda" in cfg.strategies:
        raise ConfigError("slda fits such a map itself, from a within-class scatter that every "
                          "class updates; drop --whiten")
    if not any(s in WHITEN_HEADS for s in cfg.strategies):
        raise ConfigError(f"whiten is for the heads that learn in closed form on frozen features "
                          f"({', '.join(WHITEN_HEADS)}); add one of them with -s")
    growing = [s for s in cfg.strategies if s in ("net2net", "progressive", "independent")]
    if growing:
        raise ConfigError(f"whiten keeps one map of the backbone's features, and {growing[0]} "
                          f"changes their width; drop one of them")

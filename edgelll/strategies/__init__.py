"""Continual-learning strategies, one per file, registered by name."""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError, unknown_name
from ..values import check_number, coerce
from .base import Batch, Context, Plan, Strategy


def _discover() -> dict[str, type[Strategy]]:
    """Every Strategy subclass with a name, from every module of this package (one per method)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    found, stack = {}, list(Strategy.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.name:
            if cls.name in found and found[cls.name] is not cls:
                raise RuntimeError(f"two strategies are named {cls.name!r}")
            found[cls.name] = cls
    order = ["naive", "joint", "independent", "progressive", "net2net", "replay", "ewc"]
    return dict(sorted(found.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order
                                                      else len(order), kv[0])))


STRATEGIES: dict[str, type[Strategy]] = _discover()


def strategy_params(name: str, raw: dict) -> dict:
    """Check ``raw`` settings against the strategy's parameters; return all of them, resolved."""

    cls = STRATEGIES[name]
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(unknown_name(f"parameter of strategy {name!r}", key, fields) if fields
                              else f"strategy {name!r} takes no parameters, got {name}.{key}")
        default = fields[key].default
        if value is None or (isinstance(value, str) and value.lower() in ("none", "auto")):
            values[key] = None
        elif default is None and fields[key].metadata.get("number") == "float":
            try:  # an optional number (None: auto)
                values[key] = coerce(f"{name}.{key}", value, 0.0)
            except ConfigError:
                raise ConfigError(f"{name}.{key} must be auto or a number, got {value!r}") from None
        elif default is None:  # optional counts (None: sized automatically)
            if not _is_int(value) or isinstance(value, bool):
                raise ConfigError(f"{name}.{key} must be a whole number or auto, got {value!r}")
            values[key] = int(float(value))
        else:
            values[key] = coerce(f"{name}.{key}", value, default)
        check_number(f"{name}.{key}", values[key])  # inf, nan, 1e99: refused before training
    params = cls.Params(**values)  # __post_init__ checks ranges
    return dataclasses.asdict(params)


def _is_int(value) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError, OverflowError):  # int(inf) overflows
        return False


def create_strategy(name: str, params: dict) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(unknown_name("strategy", name, STRATEGIES))
    cls = STRATEGIES[name]
    return cls(cls.Params(**params))


__all__ = ["STRATEGIES", "Batch", "Context", "Plan", "Strategy", "create_strategy", "strategy_params"]

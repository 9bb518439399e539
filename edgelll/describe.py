"""What a strategy's parameters mean, and the values a run actually used for the automatic ones.

Each strategy's ``Params`` dataclass carries, per field, ``metadata={"help": ...}`` and, for a
value chosen while the run is set up (``None`` meaning "fill the memory budget" or "the training
batch size"), ``"resolved"``: the strategy attribute that holds the chosen value, or
``"cfg.NAME"`` for a setting of the run. One source, so ``edgelll list strategy NAME`` and
``metrics.json`` cannot disagree with the code.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def shown_default(value: Any) -> str:
    """A default as a person types it after ``--set NAME.PARAM=``."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, str):
        return repr(value) if value == "" else value
    return str(value)


def parameters(params_cls: type) -> list[dict]:
    """One row per parameter of a ``Params`` dataclass: name, default (as shown) and help."""
    rows = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"name": f.name, "default": shown_default(default),
                     "help": f.metadata.get("help", "")})
    return rows


def strategy_parameters(name: str) -> list[dict]:
    """The parameters of the registered strategy ``name`` (imports the registry, hence torch)."""
    from .errors import ConfigError, unknown_name
    from .strategies import STRATEGIES

    if name not in STRATEGIES:
        raise ConfigError(unknown_name("strategy", name, STRATEGIES))
    return parameters(STRATEGIES[name].Params)


def resolved_values(strategies, cfg) -> dict[str, Any]:
    """``{"replay.size": 200, ...}``: the value each automatic parameter took in this run.

    ``strategies`` are the run's strategy objects (after budget planning), ``cfg`` its
    :class:`~edgelll.config.LearnConfig`. A parameter the user set keeps its own value; one left
    automatic reads the attribute its metadata names, falling back to the parameter itself while
    that attribute is still unset.
    """
    out: dict[str, Any] = {}
    for strategy in strategies:
        params = strategy.params
        for f in dataclasses.fields(params):
            source = f.metadata.get("resolved")
            if source is None:
                continue
            value = getattr(params, f.name)
            if value is None or not source.startswith("cfg."):  # an attribute follows a set value
                found = (getattr(cfg, source[4:], None) if source.startswith("cfg.")
                         else getattr(strategy, source, None))
                value = found if found is not None else value
            out[f"{strategy.name}.{f.name}"] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    """A JSON value: ints stay ints (a tensor-derived count becomes one)."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        return value
    return as_int if as_int == value else float(value)

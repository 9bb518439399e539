"""Reading values from config files, options and ``--set``: sizes, literals, and coercion to a
setting's type. Shared by the config and the strategies' parameters, and importing neither."""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import ConfigError

# Counts (tasks, epochs, batch sizes, steps) above this are refused: torch and numpy take 32-bit
# sizes in places, and no edge run needs more.
MAX_COUNT = 2**31 - 1

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "k": 2**10, "m": 2**20, "g": 2**30,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str | int | None) -> int | None:
    """Bytes from ``4MiB``, ``512KiB``, ``1.5MB`` or a plain integer (KB/MB are powers of 1000)."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise ConfigError(f"cannot read the size {text!r}; write it like 4MiB, 512KiB, 1.5MB or 65536")
    if isinstance(text, int):
        if text < 1:
            raise ConfigError(f"size {text!r} is less than one byte")
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read the size {text!r}; write it like 4MiB, 512KiB, 1.5MB or 65536")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value < 1:
        raise ConfigError(f"size {text!r} is less than one byte")
    return int(value)


def format_bytes(n: int | float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def coerce(name: str, value: Any, default: Any) -> Any:
    """Turn a value from a file or ``--set`` into the type of its default."""
    try:
        if isinstance(value, str) and not isinstance(default, str):
            value = parse_literal(value)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            return float(value)
        if isinstance(default, tuple):
            items = value if isinstance(value, (list, tuple)) else [value]
            items = [parse_literal(v) if isinstance(v, str) else v for v in items]
            if default:  # every item like the default's (e.g. widths are ints)
                return tuple(coerce(name, v, default[0]) for v in items)
            return tuple(items)
        return value
    except ValueError:
        raise ConfigError(f"{name} must be like {default!r}, got {value!r}") from None


def check_number(name: str, value: Any) -> None:
    """Refuse a non-finite float or a whole number beyond :data:`MAX_COUNT` (also inside a tuple,
    e.g. widths) in a model or strategy parameter, before it reaches an allocation or a cast."""
    for v in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(v, bool):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{name} must be a finite number, got {v}")
        if isinstance(v, int) and abs(v) > MAX_COUNT:
            shown = v if abs(v) < 10**15 else f"{float(v):.3g}"
            raise ConfigError(f"{name} must be at most {MAX_COUNT} in size, got {shown}")


def parse_literal(text: str) -> Any:
    text = text.strip()
    if "," in text:
        return tuple(parse_literal(t) for t in text.split(",") if t.strip())
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null", "auto"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def is_none(value: Any) -> bool:
    """None, or text that reads as None (none, None, null, auto) in a file or ``--set``."""
    return value is None or (isinstance(value, str) and parse_literal(value) is None)

"""What ``--resume`` trusts: a checkpoint checked field by field against the run, and a config
compared without the settings that only change speed or output.

A checkpoint is data from disk: a torn copy, a file from another run, or a NaN-filled save must be
refused with one line before anything is restored from it, never skip an experience or be blamed
on a setting that ``--resume`` cannot change.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from .config import LearnConfig
from .errors import CheckpointError, EdgelllError

# Settings a resumed run may change, because they change speed or output, not what is learned:
# ``threads`` sets torch's CPU threads (``--quiet`` and ``--debug`` are not settings at all).
# ``device`` is not among them: CUDA and CPU kernels round differently, so a run moved between
# them would no longer be the run its config.json describes, and resume promises the same bits.
NEUTRAL = ("threads",)


def same_config(stored, cfg: LearnConfig) -> bool:
    """True when a config dict from a run directory is ``cfg`` up to :data:`NEUTRAL` settings.
    Settings added to edgelll after the run began take their defaults, so a run started by an
    older version still resumes."""
    if not isinstance(stored, dict):
        return False
    try:
        stored = {k: v for k, v in stored.items() if k not in NEUTRAL}
        mine = {k: v for k, v in cfg.to_dict().items() if k not in NEUTRAL}
        theirs = {k: v for k, v in LearnConfig.from_dict(stored).to_dict().items()
                  if k not in NEUTRAL}
        return theirs == mine
    except EdgelllError:
        return False


def _corrupt(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is corrupt or not from this run ({what}); delete it "
                           f"to resume from the one before")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fractions(row, n: int) -> bool:
    return (isinstance(row, (list, tuple)) and len(row) == n
            and all(isinstance(a, (int, float)) and not isinstance(a, bool) and 0.0 <= a <= 1.0
                    for a in row))


def _first_bad_tensor(state, prefix: str, allow_inf: bool) -> str | None:
    """The name of the first floating tensor in a nested state holding NaN (or Inf), else None."""
    if torch.is_tensor(state):
        if state.is_floating_point() or state.is_complex():
            bad = torch.isnan(state) if allow_inf else ~torch.isfinite(state)
            if bool(bad.any()):
                return prefix
        return None
    items = (state.items() if isinstance(state, dict)
             else enumerate(state) if isinstance(state, (list, tuple)) else ())
    for key, value in items:
        found = _first_bad_tensor(value, f"{prefix}.{key}" if prefix else str(key), allow_inf)
        if found is not None:
            return found
    return None


def check_checkpoint(ckpt: dict, path: Path, n_experiences: int, class_order: list[int],
                     strategies: list[str]) -> None:
    """Refuse a checkpoint whose fields are missing, out of range or inconsistent with the run
    (``n_experiences`` long, classes in ``class_order``, these ``strategies``)."""
    path = Path(path)
    m = re.fullmatch(r"exp(\d+)\.pt", path.name)
    nxt = ckpt.get("next_experience")
    if not _is_int(nxt) or not 1 <= nxt <= n_experiences:
        raise _corrupt(path, f"next_experience {nxt!r} is outside 1..{n_experiences}")
    if m and int(m.group(1)) + 1 != nxt:
        raise _corrupt(path, f"next_experience {nxt} does not follow its name {path.name}")
    acc = ckpt.get("acc")
    if not (isinstance(acc, list) and len(acc) == nxt
            and all(_fractions(r, n_experiences) for r in acc)):
        raise _corrupt(path, f"acc is not {nxt} rows of {n_experiences} accuracies in [0, 1]")
    if not _fractions(ckpt.get("random_acc"), n_experiences):
        raise _corrupt(path, f"random_acc is not {n_experiences} accuracies in [0, 1]")
    stats = ckpt.get("stats")
    if not (isinstance(stats, list) and len(stats) == nxt and all(
            isinstance(s, dict) and s.get("experience") == i for i, s in enumerate(stats))):
        raise _corrupt(path, f"stats do not list experiences 0..{nxt - 1}")
    if ckpt.get("class_order") != list(class_order):
        raise _corrupt(path, f"class_order {ckpt.get('class_order')!r} is not the stream's "
                             f"{list(class_order)}")
    peak = ckpt.get("peak_memory")
    if not (isinstance(peak, dict) and all(_is_int(v) and v >= 0 for v in peak.values())):
        raise _corrupt(path, "peak_memory is not a table of byte counts")
    held = ckpt.get("strategies")
    if not (isinstance(held, dict) and set(held) == set(strategies)):
        raise _corrupt(path, f"it holds strategies {sorted(held) if isinstance(held, dict) else held!r}"
                             f", the run has {sorted(strategies)}")
    elapsed = ckpt.get("elapsed", 0.0)
    if not (isinstance(elapsed, (int, float)) and math.isfinite(elapsed) and elapsed >= 0):
        raise _corrupt(path, f"elapsed {elapsed!r} is not a number of seconds")
    if not isinstance(ckpt.get("spec"), dict) or not isinstance(ckpt.get("model"), dict):
        raise _corrupt(path, "it lacks the model's spec or state")
    # No optimizer exists while nothing is trainable (a frozen backbone under a closed-form head).
    if not (ckpt.get("optimizer") is None or isinstance(ckpt.get("optimizer"), dict)):
        raise _corrupt(path, "its optimizer state is not a table")
    measured = ckpt.get("probe")  # (activation bytes, forward FLOPs); absent in older ones
    if not (measured is None or (isinstance(measured, (list, tuple)) and len(measured) == 2
                                 and all(isinstance(v, int) and v >= 0 for v in measured))):
        raise _corrupt(path, f"its probe {measured!r} is not two counts (activation bytes, FLOPs)")
    frozen = ckpt.get("frozen")
    if not (isinstance(frozen, list) and set(frozen) <= set(ckpt["model"])):
        raise _corrupt(path, "its list of frozen parameters does not name the model's")
    # Model and optimizer hold no infinities when healthy (masked units are made at forward time);
    # a strategy's state may (e.g. padded logits), so only NaN is refused there.
    for name, state, allow_inf in (("model", ckpt["model"], False),
                                   ("optimizer", ckpt["optimizer"] or {}, False),
                                   ("strategies", held, True)):
        bad = _first_bad_tensor(state, "", allow_inf)
        if bad is not None:
            raise _corrupt(path, f"non-finite values in {name} {bad}")


def elapsed_before(ckpt: dict) -> float:
    """Seconds the run had taken when ``ckpt`` was written; for a checkpoint written before edgelll
    stored them, the sum of its experiences' seconds."""
    if "elapsed" in ckpt:
        return float(ckpt["elapsed"])
    return float(sum(s.get("seconds", 0.0) for s in ckpt["stats"]))

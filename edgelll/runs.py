"""Run directories, atomic writes and checkpoints.

Every file is written to a temporary name in the same directory, flushed to disk and moved into
place with ``os.replace``, so a killed process leaves either the old file or the new one, never a
torn one. Checkpoints hold tensors and plain values only and load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import CheckpointError, ConfigError

CHECKPOINT_FORMAT = "edgelll-checkpoint/1"


def atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file, then move it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2) + "\n"), mode="w")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def save_checkpoint(path: Path, payload: dict) -> None:
    atomic_write(path, lambda fh: torch.save({"format": CHECKPOINT_FORMAT, **payload}, fh))


def load_checkpoint(path: Path, map_location=None) -> dict:
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torch raises many kinds for a torn or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not an edgelll checkpoint "
                              f"({first[:120]}); delete it to resume from the one before") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an edgelll checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def checkpoint_path(run_dir: Path, experience: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"exp{experience:03d}.pt"


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = []
    for p in (Path(run_dir) / "checkpoints").glob("exp*.pt"):
        m = re.fullmatch(r"exp(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def remove_stale_temporaries(run_dir: Path) -> int:
    """Delete temporary files a killed writer left behind (never a finished file)."""
    stale = [p for d in (Path(run_dir), Path(run_dir) / "checkpoints") if d.is_dir()
             for p in d.glob(".*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def unique_run_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... if taken; the directory is not created."""
    root = Path(root)
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


def check_new_run_dir(path: Path) -> None:
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"output directory {path} already exists; pass --resume {path} to "
                          f"continue it, or choose another --out")


def create_run_dir(path: Path) -> Path:
    path = Path(path)
    check_new_run_dir(path)
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {path}: {exc.strerror}") from None
    return path

"""Run directories, atomic writes and checkpoints.

Every file is written to a temporary name in the same directory, flushed to disk and moved into
place with ``os.replace``, so a killed process leaves either the old file or the new one, never a
torn one. Checkpoints hold tensors and plain values only and load with ``weights_only=True``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from .errors import CheckpointError, ConfigError, OutputError
from .runtime.format import atomic_write as _atomic_write

CHECKPOINT_FORMAT = "edgelll-checkpoint/1"


def _cannot(action: str, path: Path, exc: OSError) -> OutputError:
    """One line for an OS refusal (full disk, read-only or missing folder), naming the path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"cannot {action} {path}: {reason}; free disk space or choose a writable "
                       f"--out")


def atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file, then move it onto ``path``; an ``OSError``
    becomes :class:`OutputError` naming ``path``, which keeps what it held before. The one
    implementation is the runtime's (torch-free), so runs and device states write alike."""
    _atomic_write(path, write, mode, hint="choose a writable --out")


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2) + "\n"), mode="w")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def save_checkpoint(path: Path, payload: dict) -> None:
    # Serialised in memory first: torch's zip writer reports a full disk as a RuntimeError, while
    # a plain file write reports it as the OSError that atomic_write turns into one line.
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buf)
    atomic_write(path, lambda fh: fh.write(buf.getbuffer()))


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
        if m and p.is_file():  # never a FIFO or device: reading one would hang
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


# Files edgelll itself puts in a run directory before config.json exists. config.json is written
# last when a run is created, so a directory holding only these was stopped before the run began
# (e.g. killed) and may be taken over by a new run.
LOCK_NAME = ".lock"
_SKELETON = {LOCK_NAME, "env.json", "checkpoints"}


def is_skeleton(path: Path) -> bool:
    for entry in path.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            continue
        if entry.name not in _SKELETON:
            return False
        if entry.name == "checkpoints" and (not entry.is_dir() or any(
                not (p.name.startswith(".") and p.name.endswith(".tmp")) for p in entry.iterdir())):
            return False
    return True


def check_new_run_dir(path: Path) -> None:
    """Refuse an output directory that holds a run or anything that is not edgelll's own."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"output directory {path} already exists and is not a folder; choose "
                          f"another --out")
    if (path / "config.json").exists():
        raise ConfigError(f"output directory {path} already exists; pass --resume {path} to "
                          f"continue it, or choose another --out")
    if not is_skeleton(path):
        raise ConfigError(f"output directory {path} already exists and holds other files; "
                          f"choose another --out")


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock``, held while this process works in the run
    directory; the kernel drops it when the process ends, however it ends."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        path = self.run_dir / LOCK_NAME
        try:
            self._fh = open(path, "ab")  # noqa: SIM115 - held open for the run's lifetime
        except OSError as exc:
            raise _cannot("write", path, exc) from None
        if fcntl is None:  # no flock (Windows): runs are not protected from each other
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise OutputError(f"run directory {self.run_dir} is in use by another edgelll "
                              f"process; wait for it to end or choose another --out") from None
        except OSError:
            pass  # a file system without locks (some network mounts): go on unprotected

    def release(self) -> None:
        fh, self._fh = getattr(self, "_fh", None), None
        if fh is not None:
            fh.close()

    def __del__(self) -> None:
        self.release()


def create_run_dir(path: Path) -> RunLock:
    """Create (or take over an abandoned skeleton of) a run directory and lock it.

    The check is repeated once the lock is held, so of two processes started with the same
    ``--out`` one runs and the other is refused, never both.
    """
    path = Path(path)
    check_new_run_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {path}: {exc.strerror}") from None
    lock = RunLock(path)
    try:
        check_new_run_dir(path)
        remove_stale_temporaries(path)
        (path / "checkpoints").mkdir(exist_ok=True)
    except OSError as exc:
        lock.release()
        raise _cannot("write", path / "checkpoints", exc) from None
    except BaseException:
        lock.release()
        raise
    return lock

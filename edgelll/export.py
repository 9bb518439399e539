"""``edgelll export RUN_DIR``: a run's model as an ONNX file a device runs without torch.

One table of formats (:data:`FORMATS`, after ultralytics' exporter, whose per-format table drives
its checks, export and report) says what each format writes and how it is quantised. Every
export is checked before anything is written:

- parity: the fp32 graph runs in ONNX Runtime on every test set of the run's stream (rebuilt from
  its ``config.json``) against torch; a max absolute score difference above 1e-4 or predicted
  labels agreeing on fewer than 99.9% of the samples fails the export;
- int8 (static QDQ with per-channel weights, or dynamic): every checkpoint up to the exported one
  is quantised the same way and scored on every test set, so the accuracy matrix, ACC, BWT and
  forgetting (Lopez-Paz & Ranzato 2017, arXiv:1706.08840; Chaudhry et al. 2018,
  arXiv:1801.10112) are re-measured on the quantised graphs; a drop in ACC above
  ``max_acc_drop`` points fails the export.

Everything is written at the end, each file atomically, so a failed check leaves the fp32 model
and any earlier export as they were. An existing output from another run or a later checkpoint
is replaced only with ``force``. The metadata follows :mod:`edgelll.runtime.format`.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import metrics as M
from .errors import CheckpointError, ConfigError, unknown_name
from .export_onnx import PROVIDERS, ExportError, read_metadata
from .runtime.format import config_digest

__all__ = ["FORMATS", "ExportError", "ExportOptions", "export_run", "config_digest"]

PARITY_TOL = 1e-4
MIN_AGREEMENT = 0.999
OPSETS = range(13, 21)  # 17 is the tested default; the exporter's range otherwise


@dataclass(frozen=True)
class Format:
    name: str
    stem: str  # default file name, beside "-extractor" for --split
    quant: str | None  # None (fp32), "static", "dynamic"
    description: str


FORMATS = {f.name: f for f in (
    Format("onnx", "model", None, "fp32 ONNX graph"),
    Format("onnx-int8", "model-int8", "static",
           "int8 static QDQ, per-channel weights, calibrated on the run's exemplars"),
    Format("onnx-int8-dynamic", "model-int8-dynamic", "dynamic",
           "int8 weights, activations quantised per batch at run time"),
)}


@dataclass(frozen=True)
class ExportOptions:
    format: str = "onnx"
    opset: int = 17
    out: Path | None = None  # default RUN_DIR/export/<format stem>[-extractor].onnx
    split: bool = False
    head: str = "trained"  # trained | ncm (split exports)
    calibration: str = "buffer"  # buffer (the run's exemplars, when it has some) | holdout
    calib_samples: int = 256
    max_acc_drop: float = 1.0  # points of ACC an int8 export may lose
    checkpoint: str | None = None  # expNNN; default the last
    force: bool = False
    threads: int = 1  # ONNX Runtime intra-op threads, for parity and timing
    latency_runs: int = 300

    def check(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(unknown_name("export format", self.format, FORMATS))
        if self.opset not in OPSETS:
            raise ConfigError(f"--opset {self.opset} is outside {OPSETS.start}..{OPSETS.stop - 1}; "
                              f"17 is the tested default")
        if self.head not in ("trained", "ncm"):
            raise ConfigError(unknown_name("head", self.head, ("trained", "ncm")))
        if self.head == "ncm" and not self.split:
            raise ConfigError("--head ncm replaces the head of a split export; add --split")
        if self.calibration not in ("buffer", "holdout"):
            raise ConfigError(unknown_name("calibration", self.calibration, ("buffer", "holdout")))
        for name, value, least in (("--calib-samples", self.calib_samples, 1),
                                   ("--threads", self.threads, 1),
                                   ("latency_runs", self.latency_runs, 3)):
            if value < least:
                raise ConfigError(f"{name} must be at least {least}, got {value}")
        if not math.isfinite(self.max_acc_drop):
            raise ConfigError(f"--max-acc-drop must be a finite number of points, got "
                              f"{self.max_acc_drop}")


def checkpoints(run_dir: Path) -> dict[int, Path]:
    found = {}
    for p in (run_dir / "checkpoints").glob("exp*.pt"):
        m = re.fullmatch(r"exp(\d+)\.pt", p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def _chosen(run_dir: Path, name: str | None) -> tuple[int, dict[int, Path]]:
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory; give one that edgelll learn "
                              f"wrote (it holds config.json and checkpoints/)")
    found = checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir} holds no checkpoint (checkpoints/expNNN.pt); export a "
                              f"run that finished at least one experience")
    if name is None:
        return max(found), found
    m = re.fullmatch(r"(?:exp)?(\d+)", name)
    if m is None or int(m.group(1)) not in found:
        have = ", ".join(f"exp{k:03d}" for k in found)
        raise ConfigError(f"--checkpoint {name!r} is not in {run_dir / 'checkpoints'}; choose "
                          f"from {have}")
    return int(m.group(1)), found


def default_out(run_dir: Path, opts: ExportOptions) -> Path:
    stem = FORMATS[opts.format].stem + ("-extractor" if opts.split else "")
    return run_dir / "export" / f"{stem}.onnx"


def check_overwrite(out: Path, run_name: str, digest: str, index: int, force: bool) -> None:
    """Refuse to replace an export of another run, of a later checkpoint, or a foreign file."""
    if not out.exists() or force:
        return
    if not out.is_file():
        raise ConfigError(f"{out} exists and is not a file; choose another --out")
    meta = read_metadata(out)
    if meta is None:
        raise ExportError(f"{out} exists and is not an edgelll export; choose another --out or "
                          f"pass --force to replace it")
    src = meta.get("source") or {}
    if meta.get("config_digest") != digest or src.get("run") != run_name:
        raise ExportError(f"{out} holds an export of another run ({src.get('run')!r}); choose "
                          f"another --out or pass --force to replace it")
    theirs = re.fullmatch(r"exp(\d+)", str(src.get("checkpoint")))
    if theirs and int(theirs.group(1)) > index:
        raise ExportError(f"{out} holds a later checkpoint ({src['checkpoint']}) than "
                          f"exp{index:03d}; pass --force to replace it with the earlier one")


def summary(matrix: list[list[float]]) -> dict:
    return {"acc": M.average_accuracy(matrix), "bwt": M.backward_transfer(matrix),
            "forgetting": M.forgetting(matrix), "acc_matrix": [list(map(float, r)) for r in matrix]}


def export_run(run_dir: str | Path, opts: ExportOptions = ExportOptions(), echo=None) -> dict:
    """Export ``run_dir`` as ``opts`` asks; returns the report written beside the model.
    ``echo(line)`` receives progress lines (the CLI prints them)."""
    from .export_job import ExportJob

    opts.check()
    run_dir = Path(run_dir).expanduser()
    index, found = _chosen(run_dir, opts.checkpoint)
    job = ExportJob(run_dir, index, found, opts, echo or (lambda line: None))
    out = Path(opts.out).expanduser() if opts.out is not None else default_out(run_dir, opts)
    check_overwrite(out, job.run_name, job.digest, index, opts.force)
    return job.run(out)


def report_entry(opts: ExportOptions, **fields) -> dict:
    entry = {"format": opts.format, "description": FORMATS[opts.format].description,
             "opset": opts.opset, "providers": PROVIDERS, "threads": opts.threads,
             "options": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in asdict(opts).items()}}
    entry.update(fields)
    return entry


def merged_report(path: Path, name: str, entry: dict) -> dict:
    """report.json holds one entry per export file in its folder; this one's is replaced."""
    try:
        old = json.loads(path.read_text())
        exports = old["exports"] if isinstance(old.get("exports"), dict) else {}
    except (OSError, ValueError, AttributeError, KeyError):
        exports = {}
    exports[name] = entry
    return {"format": "edgelll-export-report/1", "exports": exports,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


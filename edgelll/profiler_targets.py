"""What ``edgelll profile`` measures: a target resolved to its ONNX file, its metadata, the run
it came from (for torch eager and labels) and the split export that measures learning.

A run directory is profiled through its fp32 export (``RUN/export/model.onnx``), made on the fly
when missing (that needs torch: the training install). An ONNX file is profiled as it is; when it
sits in a run's ``export/`` folder and its metadata's config digest matches that run, the run is
used for torch eager and the label. A file without edgelll metadata is profiled with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, ConfigError, DataError
from .runtime import format as fmt
from .values import format_bytes

# ONNX tensor element types as onnxruntime names them -> numpy dtypes
ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(double)": "float64",
              "tensor(float16)": "float16"}


@dataclass
class Target:
    given: Path
    onnx: Path
    meta: dict | None
    run_dir: Path | None = None
    config: dict | None = None
    split: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """fp32 vs int8, teacher vs student, strategy and budget, from the metadata and run."""
        if self.meta is None:
            return self.onnx.stem
        kind = {"onnx": "fp32", "onnx-int8": "int8", "onnx-int8-dynamic": "int8-dyn"}.get(
            self.meta.get("export_format"), self.meta.get("export_format", "?"))
        strategies = (self.config or {}).get("strategies") or self.meta.get("strategies")
        name = "+".join(strategies) if strategies else (self.meta.get("source") or {}).get(
            "run", self.onnx.stem)
        parts = [name, kind]
        if strategies and "distill" in strategies:
            parts.append("student")
        limit = (self.meta.get("memory") or {}).get("limit")
        if limit:
            parts.append(format_bytes(limit).replace(" ", "").replace(".00", ""))
        if self.meta.get("graph") == "extractor":
            parts.append("split")
        return " ".join(parts)


def read_meta(path: Path, providers, threads: int) -> dict | None:
    from .runtime.session import make_session

    session = make_session(path, providers, threads)  # a non-ONNX or torn file: one DataError
    return fmt.parse_metadata(session.get_modelmeta().custom_metadata_map, path)


def _run_config(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{run_dir}/config.json cannot be read ({exc}); is it an edgelll "
                              f"run directory?") from None


def _check_run_dir(run_dir: Path) -> dict:
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"{run_dir} is not an edgelll run directory (no config.json); give "
                              f"a run directory or an .onnx file")
    if not any((run_dir / "checkpoints").glob("exp*.pt")):
        raise CheckpointError(f"{run_dir} holds no checkpoint (checkpoints/expNNN.pt); profile a "
                              f"run that finished at least one experience")
    return _run_config(run_dir)


def _export(run_dir: Path, split: bool, threads: int, echo) -> Path:
    from .export import ExportOptions, default_out, export_run

    opts = ExportOptions(split=split, threads=threads)
    echo(f"exporting {run_dir}{' (split)' if split else ''} for profiling")
    export_run(run_dir, opts)
    return default_out(run_dir, opts)


def _check_current(target: Target) -> None:
    """A note when a run's export is not of its last checkpoint or of its config as it is now
    (the run was resumed after exporting): the profile says which model it timed."""
    meta = target.meta or {}
    last = max((p.stem for p in (target.run_dir / "checkpoints").glob("exp*.pt")), default=None)
    theirs = (meta.get("source") or {}).get("checkpoint")
    if theirs != last:
        target.notes.append(f"{target.onnx} is an export of {theirs}, not of the run's last "
                            f"checkpoint {last}; export it again to profile the latest model")
    elif meta.get("config_digest") != fmt.config_digest(target.config):
        target.notes.append(f"{target.onnx} was exported from another config.json than the "
                            f"run's; export it again")


def _owning_run(path: Path, meta: dict | None) -> tuple[Path | None, dict | None]:
    """The run whose export folder holds ``path``, when its config digest matches."""
    run_dir = path.resolve().parent.parent
    if meta is None or path.resolve().parent.name != "export" or not (run_dir / "config.json").is_file():
        return None, None
    try:
        config = _run_config(run_dir)
    except CheckpointError:
        return None, None
    return (run_dir, config) if fmt.config_digest(config) == meta.get("config_digest") else (None, None)


def _split_for(target: Target, have_torch: bool, threads: int, providers, echo) -> None:
    if target.meta is None:
        return
    if target.meta.get("graph") == "extractor":
        target.split = target.onnx
        return
    beside = target.onnx.parent / "model-extractor.onnx"
    if beside.is_file():
        meta = read_meta(beside, providers, threads)
        if meta is not None and meta.get("config_digest") == target.meta.get("config_digest"):
            target.split = beside
            return
    if target.run_dir is not None and have_torch:
        target.split = _export(target.run_dir, True, threads, echo)
        return
    target.notes.append("learning cost needs a split export (edgelll export --split) of this "
                        "model" + ("" if have_torch else "; making one needs torch"))


def resolve_target(given: str | Path, have_torch: bool, threads: int, providers, echo) -> Target:
    """A :class:`Target` for a run directory or ONNX file; bad input is one EdgelllError line."""
    path = Path(given).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; give run directories or .onnx files")
    if path.is_dir():
        config = _check_run_dir(path)
        onnx = path / "export" / "model.onnx"
        if not onnx.is_file():
            if not have_torch:
                raise ConfigError(f"{path} has no export/model.onnx and exporting needs torch; "
                                  f"run edgelll export {path} on the training machine, then "
                                  f"profile the .onnx file")
            onnx = _export(path, False, threads, echo)
        target = Target(path, onnx, read_meta(onnx, providers, threads), path, config)
        _check_current(target)
    else:
        meta = read_meta(path, providers, threads)
        run_dir, config = _owning_run(path, meta)
        target = Target(path, path, meta, run_dir, config)
        if meta is None:
            target.notes.append(f"{path.name} has no edgelll metadata: profiled as a foreign "
                                f"ONNX model (no metrics, no learning cost)")
    _split_for(target, have_torch, threads, providers, echo)
    return target


def input_specs(session, meta: dict | None) -> tuple[dict[str, tuple], dict[str, str]]:
    """Per graph input, one sample's shape (no batch axis) and dtype: from the metadata, or for
    a foreign file from the graph (a symbolic non-batch axis cannot be timed: DataError)."""
    shapes, dtypes = {}, {}
    for inp in session.get_inputs():
        if meta is not None and inp.name == "x":
            shapes[inp.name] = tuple(meta["input"]["shape"])
            dtypes[inp.name] = meta["input"]["dtype"]
            continue
        dims = list(inp.shape[1:])
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise DataError(f"input {inp.name!r} has a symbolic shape {inp.shape}; profile a "
                            f"model whose inputs have fixed sizes beyond the batch axis")
        shapes[inp.name] = tuple(dims)
        dtypes[inp.name] = ORT_DTYPES.get(inp.type, "float32")
    return shapes, dtypes


def feeds(shapes: dict, dtypes: dict, batch: int) -> dict[str, np.ndarray]:
    from .profiler_timing import random_inputs

    out = {}
    for name, shape in shapes.items():
        if name == "task":
            out[name] = np.zeros((batch, *shape), dtype=dtypes[name])
        else:
            out[name] = random_inputs(shape, dtypes[name], batch)
    return out

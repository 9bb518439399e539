"""What an export holds, read and written without torch or the onnx package: the one contract
between ``edgelll export`` (training machine), the device runtime and ``edgelll profile``.

An exported model is an ONNX file whose graph takes samples as stored (``x``: the run's dtype,
shape ``(batch, *input.shape)``, the normalisation inside the graph) and, where the head routes by
task, ``task`` (int64, ``(batch,)``). A whole model outputs ``scores`` (float32 ``(batch, units)``);
a split export's extractor outputs ``features`` (float32 ``(batch, D)``) and its head lives beside
it as a small ``.npz`` (:func:`save_head`), so a device learns in the head with numpy alone.

The metadata is one JSON object under the ``metadata_props`` key ``edgelll`` (ONNX Runtime reads it
as ``session.get_modelmeta().custom_metadata_map``, so the runtime needs no onnx package):

    format           "edgelll-export/1"
    edgelll_version  the exporter's version
    export_format    "onnx" | "onnx-int8" | "onnx-int8-dynamic"
    graph            "whole" (outputs scores) | "extractor" (outputs features; head in head_file)
    head_file        the head's .npz, relative to the ONNX file (extractor graphs only)
    input            {"shape": [...], "dtype": "uint8", "layout": "nchw"} of one sample
    inputs           graph input names, e.g. ["x"] or ["x", "task"]
    routes_by_task   bool: the graph (or head) needs each sample's task id
    labels           the model spec's class map: scenario, tasks, units (class scenario), names,
                     dataset (see :func:`units_to_labels`)
    spec             the model's whole spec (edgelll.models), for tools that rebuild it
    metrics          {"acc", "bwt", "forgetting", "acc_matrix"} of the exported model (for int8
                     export: re-measured on the quantised graph)
    memory           {"limit": bytes or null, "measured": bytes} of the run
    config_digest    sha256 of the run's canonical config.json (:func:`config_digest`)
    strategies       the run's strategies, e.g. ["replay", "bic"] (what a profile labels it by)
    source           {"run": run directory name, "checkpoint": "expNNN"}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError, OutputError

EXPORT_FORMAT = "edgelll-export/1"
METADATA_KEY = "edgelll"
HEAD_FORMAT = "edgelll-head/1"
STATE_FORMAT = "edgelll-device-state/1"


def parse_metadata(props: dict[str, str], path: str | Path = "model") -> dict | None:
    """The edgelll metadata of an ONNX file from its ``metadata_props`` (a str -> str map), or
    None when the file has none (a foreign ONNX model)."""
    raw = props.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        raise DataError(f"{path}: its edgelll metadata is not valid JSON; export it again "
                        f"with edgelll export") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise DataError(f"{path}: edgelll metadata of an unknown format "
                        f"({meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}, "
                        f"expected {EXPORT_FORMAT!r}); export it again with this edgelll")
    return meta


def config_digest(config: dict) -> str:
    """sha256 of a run's config as canonical JSON (sorted keys, no spaces): what ties an export
    to the run it came from."""
    import hashlib

    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def units_to_labels(labels: dict, units: np.ndarray, task_ids: np.ndarray | None = None) -> np.ndarray:
    """Data-set labels for output units, by the spec's class map (what ``EdgeModel.predict``
    does): the class scenario's ``units`` table, the task scenario's ``tasks[t][unit]``, and in
    the domain scenario the unit itself (the label within the task)."""
    units = np.asarray(units, dtype=np.int64)
    if "units" in labels:
        return np.asarray(labels["units"], dtype=np.int64)[units]
    if labels.get("scenario") == "task":
        tasks = labels["tasks"]
        table = np.full((len(tasks), max(map(len, tasks))), -1, dtype=np.int64)
        for i, task in enumerate(tasks):
            table[i, : len(task)] = task
        t = np.zeros_like(units) if task_ids is None else np.broadcast_to(
            np.asarray(task_ids, dtype=np.int64), units.shape)
        return table[t, units]
    return units


def atomic_write(path: str | Path, write, mode: str = "wb",
                 hint: str = "choose a writable path") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk and move it
    into place with ``os.replace``, so a reader never sees a torn file. An OS refusal (a full disk,
    a folder that cannot be written) is one :class:`OutputError` line naming ``path``, ending in
    ``hint``; the temporary file is removed and ``path`` keeps what it held."""
    path = Path(path)

    def cannot(exc: OSError) -> OutputError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return OutputError(f"cannot write {path}: {reason}; free disk space or {hint}")

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise cannot(exc) from None
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot(exc) from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` written to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data))


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """An ``.npz`` of plain arrays plus a JSON ``meta`` entry (no pickles), written atomically."""
    import io

    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: str | Path, expect: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read what :func:`save_arrays` wrote; a missing, torn or foreign file is a DataError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz ({str(exc)[:120]}); "
                        f"write it again") from None
    raw = arrays.pop("__meta__", None)
    try:
        meta = json.loads(raw.tobytes().decode()) if raw is not None else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != expect:
        raise DataError(f"{path} is not an {expect} file")
    return arrays, meta


HEAD_ARRAYS = {"linear": ("weight", "bias"), "ncm": ("sums", "counts"),
               "hebbian": ("weight", "counts"), "competitive": ("protos", "wins"),
               "neural-gas": ("nodes", "ages", "alive", "edge_age"),
               "slda": ("sums", "counts", "scatter")}
"""The arrays of each head kind (float32, except ``alive``: bool), rows indexed by class (the
prototype kinds: ``per_class`` consecutive units per class; slda's ``scatter``: ``(D, D)``)."""


def save_head(path: str | Path, head: dict) -> None:
    """A split export's head, rows indexed by output: ``kind`` "linear" (``weight`` (C, D),
    ``bias`` (C,)), "ncm" (``sums`` (C, D), ``counts`` (C,), ``cosine``), or a gradient-free
    kind (:data:`HEAD_ARRAYS`, with its option values in ``params``), with ``labels`` (C,) the
    data-set label of each row, ``tasks`` (C,) each row's task (-1: any task) and optional
    ``names`` (label -> name)."""
    kind = head["kind"]
    if kind not in HEAD_ARRAYS:
        raise DataError(f"unknown head kind {kind!r}; expected one of {', '.join(HEAD_ARRAYS)}")
    arrays = {k: np.asarray(head[k], dtype=bool if k == "alive" else np.float32)
              for k in HEAD_ARRAYS[kind]}
    arrays["labels"] = np.asarray(head["labels"], dtype=np.int64)
    arrays["tasks"] = np.asarray(head["tasks"], dtype=np.int64)
    meta = {"format": HEAD_FORMAT, "kind": kind, "cosine": bool(head.get("cosine", False)),
            "params": dict(head.get("params") or {}),
            "names": {str(k): v for k, v in (head.get("names") or {}).items()}}
    save_arrays(path, arrays, meta)


def load_head(path: str | Path) -> dict:
    arrays, meta = load_arrays(path, HEAD_FORMAT)
    return {**arrays, "kind": meta["kind"], "cosine": meta["cosine"], "names": meta["names"],
            "params": meta.get("params") or {}}

"""A device state (``format.STATE_FORMAT``): the head the device has been learning in, its
optional reservoir buffer (with the generator's state, so sampling resumes where it stopped) and
the class names, in one ``.npz`` of plain arrays written atomically by ``format.save_arrays``.
Arrays are stored as they are held (float32 head, the buffer's own dtype), so a reload gives
bitwise the same scores. The state names the export it grew from (config digest and source) and
its feature width; a state whose width does not fit the extractor is refused."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from . import format as fmt
from .buffer import ReservoirBuffer
from .heads import Head, head_from_arrays

HEAD_KEYS = (*dict.fromkeys(k for keys in fmt.HEAD_ARRAYS.values() for k in keys), "labels", "tasks")


def save_state(path, head: Head, buffer: ReservoirBuffer | None, export_meta: dict | None) -> None:
    head_arrays = head.to_arrays()
    arrays = {f"head.{k}": head_arrays[k] for k in HEAD_KEYS if k in head_arrays}
    meta = {"format": fmt.STATE_FORMAT, "features": head.n_features,
            "head": {"kind": head.kind, "cosine": bool(head_arrays.get("cosine", False)),
                     "params": head_arrays.get("params") or {},
                     "names": {str(k): v for k, v in head.names.items()}},
            "buffer": None,
            "export": {k: (export_meta or {}).get(k) for k in ("config_digest", "source")}}
    if buffer is not None:
        buf_arrays, meta["buffer"] = buffer.to_arrays()
        arrays.update({f"buffer.{k}": v for k, v in buf_arrays.items()})
    fmt.save_arrays(path, arrays, meta)


def load_state(path, width: int | None, lr: float = 0.01) -> tuple[Head, ReservoirBuffer | None]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"device state {path} does not exist; save one with model.save(path), "
                        f"or load without state=")
    arrays, meta = fmt.load_arrays(path, fmt.STATE_FORMAT)
    try:
        head = {k.removeprefix("head."): v for k, v in arrays.items() if k.startswith("head.")}
        head.update(meta["head"])
        out = head_from_arrays(head, lr)
        buffer = None
        if meta.get("buffer") is not None:
            buf = {k.removeprefix("buffer."): v for k, v in arrays.items() if k.startswith("buffer.")}
            buffer = ReservoirBuffer.from_arrays(buf, meta["buffer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"device state {path} is incomplete ({exc}); save it again") from None
    if width is not None and out.n_features != width:
        raise DataError(f"device state {path} holds a head of {out.n_features} features but this "
                        f"extractor gives {width}; it was saved from another export")
    if buffer is not None and buffer.of == "features" and buffer.shape != (out.n_features,):
        raise DataError(f"device state {path}: its buffer's features do not fit its head")
    return out, buffer

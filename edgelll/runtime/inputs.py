"""What a model takes, checked once per call before ONNX Runtime sees it: samples as stored (a batch
``(N, *shape)`` or one sample ``shape``; a missing or extra axis of size 1 is fine, as
``EdgeModel.predict`` allows), in the export's dtype, and task ids where the model routes by task.
A mismatch is one :class:`DataError` line naming what was expected. The common case (a batch of
the right shape and dtype) costs two comparisons."""

from __future__ import annotations

import numpy as np

from ..errors import DataError

ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int16)": "int16",
              "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool"}


def _squeeze(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


def _fits(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


class InputSpec:
    """One sample's ``shape`` (None for a dimension the graph leaves open) and ``dtype``."""

    def __init__(self, shape, dtype, layout: str | None = None) -> None:
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.layout = layout

    @classmethod
    def from_session_input(cls, node) -> InputSpec:
        dims = [d if isinstance(d, int) and d > 0 else None for d in node.shape[1:]]
        return cls(dims, ORT_DTYPES.get(node.type, "float32"))

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        layout = f", layout {self.layout}" if self.layout else ""
        return f"(N, {dims}) {self.dtype.name}{layout}"

    def batch(self, x) -> np.ndarray:
        """``x`` as a batch ``(N, *shape)`` of the input dtype, or a DataError."""
        if type(x) is np.ndarray and x.dtype == self.dtype and x.shape[1:] == self.shape:
            return x  # the common case, checked in two comparisons
        x = np.asarray(x)
        if x.dtype != self.dtype:
            if x.dtype.kind not in "biuf" or not np.can_cast(x.dtype, self.dtype, "safe"):
                raise DataError(f"samples of dtype {x.dtype.name} do not fit this model, which "
                                f"takes {self.describe()} as stored; convert them with "
                                f"x.astype({self.dtype.name!r}) if the values fit")
            x = x.astype(self.dtype)
        if _fits(x.shape[1:], self.shape):
            return np.ascontiguousarray(x)
        want = _squeeze(self.shape)
        if None not in self.shape:
            if x.ndim >= 1 and _squeeze(x.shape[1:]) == want and x.shape[0] > 0:
                return np.ascontiguousarray(x.reshape(x.shape[0], *self.shape))
            if _squeeze(x.shape) == want:
                return np.ascontiguousarray(x.reshape(1, *self.shape))
        elif _fits(x.shape, self.shape):
            return np.ascontiguousarray(x[None])
        raise DataError(f"samples shaped {x.shape} do not fit this model, which takes "
                        f"{self.describe()} (a batch) or one sample without the N axis")


def task_array(task_ids, n: int, n_tasks: int | None) -> np.ndarray:
    """Task ids as int64 ``(n,)`` (a single id applies to every sample)."""
    t = np.asarray(task_ids)
    if t.dtype.kind not in "iu":
        raise DataError(f"task ids must be integers (got dtype {t.dtype.name})")
    if t.ndim > 1 or (t.ndim == 1 and len(t) != n):
        raise DataError(f"task ids shaped {t.shape} do not fit {n} samples; give one id per "
                        f"sample or a single id")
    t = np.broadcast_to(t.astype(np.int64), (n,))
    if n and (t.min() < 0 or (n_tasks is not None and t.max() >= n_tasks)):
        raise DataError(f"task id {int(t.min() if t.min() < 0 else t.max())} is outside this "
                        f"model's tasks 0..{(n_tasks or 1) - 1}")
    return np.ascontiguousarray(t)


def label_array(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise DataError(f"labels must be integers (got dtype {y.dtype.name})")
    y = y.reshape(-1) if y.ndim else np.full(n, y, dtype=y.dtype)  # one label for all
    if len(y) != n:
        raise DataError(f"{len(y)} labels for {n} samples; give one label per sample")
    return y.astype(np.int64)

"""A reservoir of features (or raw samples) on the device, under a byte budget, in numpy.

Vitter's Algorithm R (J. S. Vitter 1985, "Random sampling with a reservoir", ACM TOMS 11(1)):
the n-th item offered (0-based) takes slot n while the reservoir fills, afterwards a uniform j in
[0, n] and slot j if j < capacity, so every item seen so far is kept with the same probability
capacity / seen. A batch is offered at once as array operations, with the result of offering its
items one at a time (when two items of a batch draw one slot, the later one wins), as
``edgelll/buffer.py`` does for torch on the training side.

The arrays are allocated whole at the capacity the budget allows, so the bytes held are exactly
``nbytes`` (the arrays' own ``nbytes``) from the start and never grow. Labels and task ids are
int32. The generator is numpy's PCG64, seeded; its state rides in the saved device state.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError

LABEL_DTYPE = np.int32


def item_bytes(shape: tuple[int, ...], dtype) -> int:
    """Bytes one stored item costs: the sample or feature vector plus its label and task id."""
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize + 2 * np.dtype(LABEL_DTYPE).itemsize


class ReservoirBuffer:
    def __init__(self, budget_bytes: int, shape: tuple[int, ...], dtype=np.float32,
                 seed: int = 0, of: str = "features") -> None:
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)) or budget_bytes < 0:
            raise ConfigError(f"the buffer's byte budget must be a whole number >= 0 (got {budget_bytes!r})")
        if of not in ("features", "samples"):
            raise ConfigError(f"a buffer holds 'features' or 'samples' (got {of!r})")
        self.budget_bytes, self.of = int(budget_bytes), of
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.capacity = self.budget_bytes // item_bytes(self.shape, self.dtype)
        self.x = np.zeros((self.capacity, *self.shape), dtype=self.dtype)
        self.y = np.zeros(self.capacity, dtype=LABEL_DTYPE)
        self.t = np.zeros(self.capacity, dtype=LABEL_DTYPE)
        self.size = 0  # filled slots
        self.seen = 0  # items offered so far (Algorithm R's n)
        self.rng = np.random.Generator(np.random.PCG64(seed))

    @property
    def nbytes(self) -> int:
        return int(self.x.nbytes + self.y.nbytes + self.t.nbytes)

    def add(self, x, y, t=None) -> None:
        """Offer the items of a batch in order, as Algorithm R would one at a time."""
        x = np.asarray(x)
        n = len(x)
        if x.shape[1:] != self.shape:
            raise DataError(f"items shaped {x.shape[1:]} do not fit this buffer of {self.shape}")
        if n == 0 or self.capacity == 0:
            self.seen += n
            return
        pos = np.arange(self.seen, self.seen + n, dtype=np.int64)
        j = np.floor(self.rng.random(n) * (pos + 1)).astype(np.int64)
        slot = np.where(pos < self.capacity, pos, j)
        src = np.flatnonzero(slot < self.capacity)
        slot = slot[src]
        # The last writer of each slot wins: keep the final occurrence of every slot.
        rev_slot = slot[::-1]
        uniq, first_rev = np.unique(rev_slot, return_index=True)
        src = src[::-1][first_rev]
        self.x[uniq] = x[src]
        self.y[uniq] = np.asarray(y).reshape(-1)[src]
        self.t[uniq] = -1 if t is None else np.broadcast_to(np.asarray(t), (n,))[src]
        self.seen += n
        self.size = min(self.capacity, self.seen)

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``k`` stored items drawn uniformly without replacement (fewer if fewer are held)."""
        k = min(int(k), self.size)
        idx = self.rng.choice(self.size, size=k, replace=False) if k else np.zeros(0, np.int64)
        return self.x[idx], self.y[idx].astype(np.int64), self.t[idx].astype(np.int64)

    def to_arrays(self) -> tuple[dict, dict]:
        """Arrays (only the filled slots) and plain values for the saved device state."""
        arrays = {"x": self.x[: self.size], "y": self.y[: self.size], "t": self.t[: self.size]}
        meta = {"budget_bytes": self.budget_bytes, "of": self.of, "shape": list(self.shape),
                "dtype": self.dtype.name, "seen": self.seen, "size": self.size,
                "rng": self.rng.bit_generator.state}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> ReservoirBuffer:
        buf = cls(int(meta["budget_bytes"]), tuple(meta["shape"]), meta["dtype"], of=meta["of"])
        size = int(meta["size"])
        if size > buf.capacity or any(len(arrays[k]) != size for k in ("x", "y", "t")):
            raise DataError("the saved buffer does not fit its own budget; save the state again")
        buf.x[:size], buf.y[:size], buf.t[:size] = arrays["x"], arrays["y"], arrays["t"]
        buf.size, buf.seen = size, int(meta["seen"])
        buf.rng.bit_generator.state = meta["rng"]
        return buf

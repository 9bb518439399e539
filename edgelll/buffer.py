"""Exemplar memory: a reservoir over the stream (Vitter 1985, Algorithm R) or class-balanced.

Samples are stored in their source dtype (uint8 images stay uint8: four times the exemplars of
float32 in the same bytes) and converted on the fly when a batch is drawn. Labels and task ids are
stored as int16. Updates take a whole chunk of the stream at once as tensor operations; the result
is exactly that of feeding the chunk to Algorithm R one sample at a time.
"""

from __future__ import annotations

import torch

from .batch import Batch


class ExemplarBuffer:
    LABEL_BYTES = 4  # int16 label + int16 task id per exemplar

    def __init__(self, capacity: int, sample_shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> None:
        self.capacity = int(capacity)
        self.x = torch.zeros((self.capacity, *sample_shape), dtype=dtype, device=device)
        self.y = torch.zeros(self.capacity, dtype=torch.int16, device=device)
        self.t = torch.zeros(self.capacity, dtype=torch.int16, device=device)
        self.size = 0  # filled slots
        self.seen = 0  # samples offered so far (Algorithm R's n)

    def tensors(self) -> list[torch.Tensor]:
        return [self.x, self.y, self.t]

    def reservoir_update(self, data: Batch, gen: torch.Generator) -> None:
        """Offer every sample of ``data`` in order, as Algorithm R would one at a time."""
        n = len(data)
        if n == 0 or self.capacity == 0:
            return
        dev = data.y.device
        pos = torch.arange(self.seen, self.seen + n, device=dev)  # each sample's stream index
        # Sample i (stream index p) takes slot p while the reservoir fills, else a uniform
        # j in [0, p] and slot j if j < capacity.
        rand = torch.rand(n, generator=gen, device="cpu").to(dev, torch.float64)
        j = torch.floor(rand * (pos + 1).to(torch.float64)).long()
        slot = torch.where(pos < self.capacity, pos, j)
        keep = slot < self.capacity
        slot, src = slot[keep], torch.nonzero(keep).flatten()
        # When two samples of the chunk hit one slot, the later one wins (as in sequential order).
        order = torch.argsort(slot * n + src)
        slot, src = slot[order], src[order]
        last = torch.ones_like(slot, dtype=torch.bool)
        last[:-1] = slot[1:] != slot[:-1]
        slot, src = slot[last], src[last]
        self._write(slot, data, src)
        self.seen += n
        self.size = min(self.capacity, self.seen)

    def balanced_update(self, data: Batch, gen: torch.Generator) -> None:
        """Keep an equal share per class: old classes shrink to the share, new ones fill it."""
        self.seen += len(data)
        old = Batch(self.x[: self.size], self.y[: self.size].long(), self.t[: self.size].long())
        pool = old.cat(data)
        classes = torch.unique(pool.y)
        share = self.capacity // max(1, len(classes))
        # A random key per sample; within a class the `share` smallest keys are kept. Old
        # exemplars are a uniform sample already, so subsampling them stays uniform.
        keys = torch.rand(len(pool), generator=gen, device="cpu").to(pool.y.device)
        order = torch.argsort(pool.y.double() * 2 + keys.double())  # by class, random within
        sorted_y = pool.y[order]
        first = torch.searchsorted(sorted_y, classes)
        rank = torch.arange(len(pool), device=pool.y.device) - first[torch.searchsorted(classes, sorted_y)]
        chosen = order[rank < share]
        n = len(chosen)
        self.x[:n] = pool.x[chosen]
        self.y[:n] = pool.y[chosen].to(torch.int16)
        self.t[:n] = pool.t[chosen].to(torch.int16)
        self.size = n

    def _write(self, slot: torch.Tensor, data: Batch, src: torch.Tensor) -> None:
        self.x[slot] = data.x[src].to(self.x.dtype)
        self.y[slot] = data.y[src].to(torch.int16)
        self.t[slot] = data.t[src].to(torch.int16)

    def sample(self, k: int, gen: torch.Generator) -> Batch:
        idx = torch.randint(0, self.size, (k,), generator=gen, device="cpu").to(self.x.device)
        return Batch(self.x[idx], self.y[idx].long(), self.t[idx].long())

    def state_dict(self) -> dict:
        return {"x": self.x[: self.size], "y": self.y[: self.size], "t": self.t[: self.size],
                "seen": self.seen, "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        n = state["x"].shape[0]
        if n > self.capacity or tuple(state["x"].shape[1:]) != tuple(self.x.shape[1:]):
            raise ValueError("stored exemplars do not fit this buffer")
        self.x[:n] = state["x"].to(self.x.device, self.x.dtype)
        self.y[:n] = state["y"].to(self.y.device)
        self.t[:n] = state["t"].to(self.t.device)
        self.size, self.seen = n, int(state["seen"])

"""Exemplar memory: a reservoir over the stream (Vitter 1985, Algorithm R), class-balanced at
random, or class-balanced by herding (Rebuffi et al. 2017, iCaRL, arXiv:1611.07725, Algorithm 4).

Samples are stored in their source dtype (uint8 images stay uint8: four times the exemplars of
float32 in the same bytes) and converted on the fly when a batch is drawn. Labels and task ids are
stored as int16. Updates take a whole chunk of the stream at once as tensor operations; the result
is exactly that of feeding the chunk to Algorithm R one sample at a time.
"""

from __future__ import annotations

import torch

from .batch import Batch


def herding_select(features: torch.Tensor, m: int) -> torch.Tensor:
    """iCaRL's Algorithm 4: indices of ``m`` samples of one class, in selection order.

    With phi the L2-normalised features and mu = mean(phi), step k picks
    p_k = argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||  over samples not yet picked,
    so the running mean of the chosen exemplars tracks the class mean. Each step is one vectorised
    distance over all candidates (a loop over m, never over samples); ties go to the lower index.
    ``m`` larger than the number of samples selects them all.
    """
    phi = torch.nn.functional.normalize(features.detach().float().flatten(1), dim=1)
    n = phi.shape[0]
    m = min(int(m), n)
    mu = phi.mean(0)
    chosen = torch.empty(m, dtype=torch.long, device=phi.device)
    taken = torch.zeros(n, dtype=torch.bool, device=phi.device)
    running = torch.zeros_like(mu)  # sum of the chosen features
    for k in range(1, m + 1):
        dist = (mu - (phi + running) / k).pow(2).sum(1).masked_fill(taken, float("inf"))
        i = torch.argmin(dist)
        chosen[k - 1] = i
        taken[i] = True
        running += phi[i]
    return chosen


def _group_rank(key: torch.Tensor) -> torch.Tensor:
    """Each row's position among the rows with its key, in stored order."""
    order = torch.argsort(key, stable=True)
    groups, counts = torch.unique_consecutive(key[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = (torch.arange(len(key), device=key.device)
                   - torch.repeat_interleave(starts, counts))
    return rank


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

    def herding_update(self, data: Batch, embed) -> None:
        """Equal share per class, exemplars chosen by herding in the feature space ``embed``.

        A class is a (task id, label) pair. Stored classes are kept in herding order, so shrinking
        one to the new share keeps the first k of its order (iCaRL's ReduceExemplarSet). Classes
        in ``data`` are selected by :func:`herding_select` over their samples (and their old
        exemplars, should a class come back); ``embed`` maps stored samples to features.
        """
        self.seen += len(data)
        old = Batch(self.x[: self.size], self.y[: self.size].long(), self.t[: self.size].long())
        k_old, k_new = _class_key(old), _class_key(data)
        share = self.capacity // max(1, len(torch.unique(torch.cat([k_old, k_new]))))
        back = torch.isin(k_old, k_new)  # stored classes that the new data brings again
        keep = ~back & (_group_rank(k_old) < share)
        parts = [Batch(old.x[keep], old.y[keep], old.t[keep])]
        pool = Batch(old.x[back], old.y[back], old.t[back]).cat(data)
        if share > 0 and len(pool):
            feats = embed(pool.x)
            k_pool = _class_key(pool)
            for c in torch.unique(k_new).tolist():  # a loop over classes, not samples
                rows = torch.nonzero(k_pool == c).flatten()
                pick = rows[herding_select(feats[rows], share)]
                parts.append(Batch(pool.x[pick], pool.y[pick], pool.t[pick]))
        n = sum(len(p) for p in parts)
        self.x[:n] = torch.cat([p.x for p in parts]).to(self.x.dtype)
        self.y[:n] = torch.cat([p.y for p in parts]).to(torch.int16)
        self.t[:n] = torch.cat([p.t for p in parts]).to(torch.int16)
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


def _class_key(b: Batch) -> torch.Tensor:
    return b.t.long() * 65536 + b.y.long()  # int16 labels and task ids: the pair is unique

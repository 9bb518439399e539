"""Tests for edgelll.buffer.ExemplarBuffer: reservoir sampling (Algorithm R) and class balance."""

from __future__ import annotations

import math

import pytest
import torch

from edgelll.batch import Batch
from edgelll.buffer import ExemplarBuffer


def _items(start: int, stop: int, label_mod: int = 10) -> Batch:
    """Items whose single int32 feature is their stream index (so stored items can be named)."""
    idx = torch.arange(start, stop, dtype=torch.int32)
    y = (idx % label_mod).long()
    return Batch(idx.view(-1, 1), y, torch.zeros_like(y))


def _offer(buf: ExemplarBuffer, n: int, chunks: list[int], gen: torch.Generator) -> None:
    start = 0
    for c in chunks:
        stop = min(n, start + c)
        buf.reservoir_update(_items(start, stop), gen)
        start = stop
    if start < n:
        buf.reservoir_update(_items(start, n), gen)


def _stored(buf: ExemplarBuffer) -> list[int]:
    return buf.x[: buf.size, 0].tolist()


# ---------------------------------------------------------------------------------------------
# reservoir


def test_reservoir_inclusion_is_uniform_over_the_stream():
    n, k, trials = 500, 50, 400
    counts = torch.zeros(n)
    for trial in range(trials):
        gen = torch.Generator().manual_seed(1000 + trial)
        buf = ExemplarBuffer(k, (1,), torch.int32)
        _offer(buf, n, [7, 64, 1], gen)
        assert buf.size == k and buf.seen == n
        stored = buf.x[:, 0].long()
        assert len(set(stored.tolist())) == k  # no item stored twice
        counts[stored] += 1
    freq = counts / trials
    p = k / n  # Algorithm R keeps every item with probability K/N
    # Each item's count over independent trials is Binomial(400, 0.1): std
    # sqrt(0.1 * 0.9 / 400) = 0.015. Five sigma (0.075) bounds all 500 items at once with
    # ample margin (P(|Z| > 5) * 500 < 3e-4); keep-first-K or keep-last-K give 0 or 1 here.
    sigma = math.sqrt(p * (1 - p) / trials)
    assert float((freq - p).abs().max()) < 5 * sigma
    assert float(freq.mean()) == pytest.approx(p)  # exactly K stored per trial
    # Early items must not be favoured over late ones (nor the reverse). A mean over 100 items
    # has std <= sqrt(0.1 * 0.9 / 40000) = 0.0015 (negative correlation only lowers it), so a
    # difference of two means has std <= 0.0021; 0.01 is about five sigma. A "keep the first K"
    # buffer gives 0.5 vs 0, "keep the last K" 0 vs 0.5.
    assert abs(float(freq[:100].mean()) - float(freq[-100:].mean())) < 0.01
    # Chi-square over items, as a second view: sum((c - E)^2 / (E * (1 - p))) has mean about
    # n - 1 = 499 and std about sqrt(2 * 499) = 32; 499 + 6 * 32 = 690.
    expected = trials * p
    chi2 = float(((counts - expected) ** 2).sum() / (expected * (1 - p)))
    assert chi2 < 690


@pytest.mark.parametrize("chunks", [[1000], [3, 4, 5], [1] * 8])
def test_reservoir_stores_everything_in_order_while_filling(chunks):
    buf = ExemplarBuffer(10, (1,), torch.int32)
    gen = torch.Generator().manual_seed(0)
    _offer(buf, 8, chunks, gen)
    assert buf.size == 8 and buf.seen == 8
    assert _stored(buf) == list(range(8))
    assert buf.y[:8].tolist() == list(range(8)) and buf.y.dtype == torch.int16
    buf.reservoir_update(_items(8, 10), gen)
    assert _stored(buf) == list(range(10))


def _reference(k: int, n: int, chunks: list[int], seed: int) -> tuple[list[int], int]:
    """Algorithm R one item at a time, with the buffer's random numbers.

    The buffer draws ``torch.rand(len(chunk), generator=gen)`` once per chunk (also while
    filling) and maps the number of stream index p to j = floor(u * (p + 1)) in float64; the
    reference draws the same numbers and applies them strictly in sequence. Returns the contents
    and how many times a slot was written twice within one chunk (so the test can see that the
    "later one wins" case really happened).
    """
    gen = torch.Generator().manual_seed(seed)
    res: list[int] = []
    start, collisions = 0, 0
    bounds = []
    for c in chunks:
        bounds.append((start, min(n, start + c)))
        start = min(n, start + c)
    if start < n:
        bounds.append((start, n))
    for lo, hi in bounds:
        if hi == lo:
            continue
        u = torch.rand(hi - lo, generator=gen).tolist()  # float32 values, exact as Python floats
        written: set[int] = set()
        for i, p in enumerate(range(lo, hi)):
            if p < k:
                res.append(p)
                written.add(p)
                continue
            j = math.floor(u[i] * (p + 1))
            if j < k:
                collisions += j in written
                written.add(j)
                res[j] = p
    return res, collisions


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("chunks", [[300], [3, 297], [20, 280], [2, 5, 60, 233], [1] * 40])
def test_reservoir_chunk_equals_sequential_algorithm_r(seed, chunks):
    k, n = 5, 300
    want, collisions = _reference(k, n, chunks, seed)
    buf = ExemplarBuffer(k, (1,), torch.int32)
    _offer(buf, n, chunks, torch.Generator().manual_seed(seed))
    assert _stored(buf) == want
    assert buf.y[:k].tolist() == [v % 10 for v in want]
    if len(chunks) < 40:
        # Large chunks over a 5-slot reservoir always hit some slot twice: the case where the
        # later item must win was exercised.
        assert collisions > 0


def test_reservoir_keeps_uint8_and_ignores_empty_or_zero_capacity():
    x = torch.arange(12, dtype=torch.uint8).view(3, 1, 2, 2)
    data = Batch(x, torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]))
    buf = ExemplarBuffer(4, (1, 2, 2), torch.uint8)
    gen = torch.Generator().manual_seed(0)
    buf.reservoir_update(data, gen)
    assert buf.x.dtype == torch.uint8 and torch.equal(buf.x[:3], x)
    assert buf.t[:3].tolist() == [0, 0, 1]
    buf.reservoir_update(Batch(x[:0], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)), gen)
    assert buf.size == 3 and buf.seen == 3
    empty = ExemplarBuffer(0, (1, 2, 2), torch.uint8)
    empty.reservoir_update(data, gen)
    assert empty.size == 0


# ---------------------------------------------------------------------------------------------
# class-balanced


def _labelled(classes: list[int], per: int, offset: int = 0) -> Batch:
    """uint8 samples of shape (1, 2, 2): pixel 0 is the label, pixel 1 a running id."""
    y = torch.tensor([c for c in classes for _ in range(per)])
    x = torch.zeros((len(y), 1, 2, 2), dtype=torch.uint8)
    x[:, 0, 0, 0] = y.to(torch.uint8)
    x[:, 0, 0, 1] = (torch.arange(len(y)) + offset).to(torch.uint8)
    return Batch(x, y, torch.zeros_like(y))


def test_balanced_update_gives_every_class_an_equal_share():
    cap = 40
    buf = ExemplarBuffer(cap, (1, 2, 2), torch.uint8)
    gen = torch.Generator().manual_seed(0)
    buf.balanced_update(_labelled([0, 1], 30), gen)
    assert buf.size == cap
    assert torch.bincount(buf.y[: buf.size].long(), minlength=2).tolist() == [20, 20]
    first = {tuple(v.flatten().tolist()) for v in buf.x[: buf.size]}
    buf.balanced_update(_labelled([2, 3], 30, offset=100), gen)
    y = buf.y[: buf.size].long()
    assert buf.size == cap and torch.bincount(y, minlength=4).tolist() == [cap // 4] * 4
    assert buf.x.dtype == torch.uint8
    # Every stored sample belongs to its label, and none is stored twice.
    assert buf.x[: buf.size, 0, 0, 0].long().tolist() == y.tolist()
    ids = buf.x[: buf.size, 0, 0, 1].tolist()
    assert len(set(ids)) == cap
    # Old classes keep a subset of their earlier exemplars.
    old = {tuple(v.flatten().tolist()) for v, c in zip(buf.x[: buf.size], y) if c < 2}
    assert old <= first
    assert buf.seen == 120


def test_balanced_update_keeps_all_of_a_small_class():
    buf = ExemplarBuffer(12, (1, 2, 2), torch.uint8)
    gen = torch.Generator().manual_seed(1)
    data = _labelled([0], 2).cat(_labelled([1], 20, offset=2))
    buf.balanced_update(data, gen)
    y = buf.y[: buf.size].long()
    assert torch.bincount(y).tolist() == [2, 6]
    assert buf.x[: buf.size, 0, 0, 0].long().tolist() == y.tolist()


# ---------------------------------------------------------------------------------------------
# state and sampling


def test_state_dict_round_trip_restores_contents_and_continuation():
    gen = torch.Generator().manual_seed(7)
    buf = ExemplarBuffer(20, (1,), torch.int32)
    _offer(buf, 100, [13, 40], gen)
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in buf.state_dict().items()}
    twin = ExemplarBuffer(20, (1,), torch.int32)
    twin.load_state_dict(state)
    assert (twin.size, twin.seen) == (buf.size, buf.seen) == (20, 100)
    for a, b in zip(twin.tensors(), buf.tensors()):
        assert torch.equal(a, b) and a.dtype == b.dtype
    # Continuing both with the same random numbers gives the same reservoir.
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    buf.reservoir_update(_items(100, 150), g1)
    twin.reservoir_update(_items(100, 150), g2)
    assert _stored(twin) == _stored(buf)


def test_state_dict_of_a_partly_filled_uint8_buffer():
    buf = ExemplarBuffer(8, (1, 2, 2), torch.uint8)
    buf.reservoir_update(_labelled([3, 4], 2), torch.Generator().manual_seed(0))
    state = buf.state_dict()
    assert state["x"].shape == (4, 1, 2, 2) and state["x"].dtype == torch.uint8
    twin = ExemplarBuffer(8, (1, 2, 2), torch.uint8)
    twin.load_state_dict(state)
    assert twin.size == 4 and torch.equal(twin.x, buf.x) and torch.equal(twin.y, buf.y)
    with pytest.raises(ValueError):
        ExemplarBuffer(3, (1, 2, 2), torch.uint8).load_state_dict(state)
    with pytest.raises(ValueError):
        ExemplarBuffer(8, (1, 3, 3), torch.uint8).load_state_dict(state)


def test_sample_draws_only_filled_slots():
    buf = ExemplarBuffer(50, (1,), torch.int32)
    gen = torch.Generator().manual_seed(0)
    batch = _items(1, 11)  # values 1..10; empty slots hold 0
    buf.reservoir_update(batch, gen)
    b = buf.sample(2000, gen)
    assert len(b) == 2000 and b.y.dtype == torch.long and b.t.dtype == torch.long
    values = b.x[:, 0]
    assert set(values.tolist()) == set(range(1, 11))  # every filled slot, never an empty one
    assert b.y.tolist() == (values % 10).tolist()

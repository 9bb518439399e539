"""Timing for ``edgelll profile``: latency percentiles of whole-batch inference in ONNX Runtime
and in torch eager, and the cost of on-device learning, all with ``time.perf_counter_ns``.

Percentiles use linear interpolation between order statistics (Hyndman & Fan 1996, definition 7:
numpy's default ``method="linear"``): for sorted values ``v`` of length ``n`` the q-th percentile
sits at rank ``q/100 * (n-1)``, between ``v[floor]`` and ``v[ceil]``. Throughput is samples per
second over the timed calls: ``batch * calls / total time`` (batch over the mean latency).

Each measurement warms up first (ONNX Runtime allocates its arena and picks kernels on the first
calls; torch's allocator warms too), then runs a fixed count (``runs``) or until ``seconds``
have passed, in interleaved rounds over every target and backend (:func:`interleaved`).
Nothing here imports torch at module level: a device install has none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

WARMUP_MIN = 10
ROUNDS = 5  # interleaved rounds over every target and backend
REWARM = 3  # untimed calls after switching to another bench


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation (numpy's default)."""
    v = sorted(float(x) for x in values)
    if not v:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    rank = q / 100 * (len(v) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def summarise(ns: list[int], batch: int) -> dict:
    """Latency percentiles in milliseconds and throughput in samples per second."""
    total_s = sum(ns) / 1e9
    return {"batch": batch, "calls": len(ns),
            "p50_ms": percentile(ns, 50) / 1e6, "p90_ms": percentile(ns, 90) / 1e6,
            "p99_ms": percentile(ns, 99) / 1e6,
            "throughput": batch * len(ns) / total_s if total_s > 0 else math.inf}


@dataclass(frozen=True)
class Budget:
    """How long to measure: ``runs`` timed calls, or as many as fit in ``seconds``."""

    runs: int | None = 1000
    seconds: float | None = None

    def check(self) -> None:
        if self.seconds is not None:
            if not (math.isfinite(self.seconds) and self.seconds > 0):
                raise ConfigError(f"--seconds must be a positive number, got {self.seconds}")
        elif self.runs is None or self.runs < 3:
            raise ConfigError(f"--runs must be at least 3 (percentiles need a few), got {self.runs}")

    @property
    def warmup(self) -> int:
        return max(WARMUP_MIN, (self.runs or 100) // 10)


def time_calls(call: Callable[[], object], runs: int | None, seconds: float | None = None,
               warmup: int = 0, sync: Callable[[], None] | None = None) -> list[int]:
    """Nanoseconds of each of ``runs`` calls (or of the calls that fit in ``seconds``) of
    ``call``, after ``warmup`` untimed ones; ``sync`` (e.g. CUDA's) runs inside each timed span
    so queued device work is counted."""
    for _ in range(warmup):
        call()
    if sync is not None:
        sync()
    clock = time.perf_counter_ns
    out: list[int] = []
    end = None if seconds is None else clock() + int(seconds * 1e9)
    while (len(out) < runs) if end is None else (clock() < end or not out):
        t0 = clock()
        call()
        if sync is not None:
            sync()
        out.append(clock() - t0)
    return out


@dataclass
class Bench:
    """One timed thing: a key (target, backend, batch), the call, and its device sync."""

    key: tuple
    call: Callable[[], object]
    sync: Callable[[], None] | None = None


def interleaved(benches: list[Bench], budget: Budget, rounds: int = ROUNDS,
                progress=None) -> dict[tuple, list[int]]:
    """Time every bench in ``rounds`` rounds, each bench a share of its calls per round, so a
    host whose speed drifts (a shared machine, a CPU warming up) shifts every target alike rather
    than whichever happened to run during the slow spell. The first round warms each bench up;
    later rounds re-warm with a few calls after switching from another model."""
    out: dict[tuple, list[int]] = {b.key: [] for b in benches}
    for r in range(rounds):
        for i, b in enumerate(benches):
            if progress is not None:
                progress(r * len(benches) + i, rounds * len(benches), b.key)
            warm = budget.warmup if r == 0 else REWARM
            if budget.seconds is not None:
                ns = time_calls(b.call, None, budget.seconds / rounds, warm, b.sync)
            else:
                share = budget.runs // rounds + (1 if r < budget.runs % rounds else 0)
                ns = time_calls(b.call, share, None, warm, b.sync) if share else []
            out[b.key].extend(ns)
    return out


def random_inputs(spec_shape, dtype: str, batch: int, seed: int = 0) -> np.ndarray:
    """Samples of one sample's shape and dtype (values do not change a dense model's time)."""
    rng = np.random.default_rng(seed)
    shape = (batch, *spec_shape)
    kind = np.dtype(dtype)
    if kind.kind in "ui":
        info = np.iinfo(kind)
        return rng.integers(max(info.min, 0), min(info.max, 255) + 1, size=shape, dtype=kind)
    return rng.random(shape, dtype=np.float32).astype(kind)


def ort_benches(prefix: tuple, session, feeds: dict[int, dict]) -> list[Bench]:
    """One bench per batch size for an ONNX Runtime session over prepared feeds."""
    return [Bench((*prefix, batch), lambda s=session, f=feed: s.run(None, f))
            for batch, feed in feeds.items()]


def torch_benches(prefix: tuple, model, inputs: dict[int, tuple], device: str = "cpu",
                  features: bool = False) -> list[Bench]:
    """One bench per batch size for torch eager on ``model`` under ``no_grad`` (the caller sets
    the threads), the same raw samples ONNX Runtime gets; on CUDA each call is synchronised.
    ``features``: the extractor alone (what a split export's graph computes)."""
    import torch

    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device == "cuda" else None
    fn = model.forward_features if features else model
    out = []
    for batch, (x, t) in inputs.items():
        xt = torch.from_numpy(x).to(device)
        args = (xt,) if features or t is None else (xt, torch.from_numpy(t).to(device))

        def call(fn=fn, args=args):
            with torch.no_grad():
                return fn(*args)
        out.append(Bench((*prefix, batch), call, sync))
    return out


def learning_cost(load_model: Callable[[], object], x: np.ndarray, y: np.ndarray,
                  budget: Budget, t: np.ndarray | None = None, shots: int = 5) -> dict:
    """Microseconds per sample of ``Model.learn`` (at batch 1 and at ``len(x)``) and of
    ``learn_class`` with ``shots`` samples, each on a freshly loaded model; ``learn_class`` gets a
    new label per call, so every timed call adds a class as a device would. ``t``: each sample's
    task, for a head that routes by task (new classes join task ``t[0]``)."""
    reps = max(3, min(budget.runs or 100, 100))
    warm = REWARM
    task = None if t is None else int(t[0])
    model = load_model()
    one = time_calls(lambda: model.learn(x[:1], y[:1], None if t is None else t[:1]), reps,
                     warmup=warm)
    model = load_model()
    batch = time_calls(lambda: model.learn(x, y, t), reps, warmup=warm)
    model = load_model()
    first = int(np.max(model.classes)) + 1
    labels = iter(range(first, first + reps + warm + 1))
    few = x[:shots]
    news = time_calls(lambda: model.learn_class(few, next(labels), task_id=task), reps,
                      warmup=warm)
    return {"learn_us_per_sample_b1": percentile(one, 50) / 1e3,
            "learn_us_per_sample": percentile(batch, 50) / 1e3 / len(x),
            "learn_batch": len(x),
            "learn_class_us_per_sample": percentile(news, 50) / 1e3 / shots,
            "learn_class_shots": shots, "calls": reps}

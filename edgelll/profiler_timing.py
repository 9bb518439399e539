"""Timing for ``edgelll profile``: latency percentiles of whole-batch inference in ONNX Runtime
and in torch eager, and the cost of on-device learning, all with ``time.perf_counter_ns``.

Percentiles use linear interpolation between order statistics (Hyndman & Fan 1996, definition 7:
numpy's default ``method="linear"``): for sorted values ``v`` of length ``n`` the q-th percentile
sits at rank ``q/100 * (n-1)``, between ``v[floor]`` and ``v[ceil]``. Throughput is samples per
second over the timed calls: ``batch * calls / total time`` (batch over the mean latency).

Each measurement warms up first (ONNX Runtime allocates its arena and picks kernels on the first
calls; torch's allocator warms too), then runs a fixed count (``runs``) or until ``seconds``
have passed. Nothing here imports torch at module level: a device install has none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

WARMUP_MIN = 10


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


def time_calls(call: Callable[[], object], budget: Budget, sync: Callable[[], None] | None = None) -> list[int]:
    """Nanoseconds of each call of ``call`` after warm-up; ``sync`` (e.g. CUDA's) runs inside
    each timed span so queued device work is counted."""
    for _ in range(budget.warmup):
        call()
    if sync is not None:
        sync()
    clock = time.perf_counter_ns
    out: list[int] = []
    if budget.seconds is not None:
        end = clock() + int(budget.seconds * 1e9)
        while clock() < end or len(out) < 3:
            t0 = clock()
            call()
            if sync is not None:
                sync()
            out.append(clock() - t0)
        return out
    for _ in range(budget.runs):
        t0 = clock()
        call()
        if sync is not None:
            sync()
        out.append(clock() - t0)
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


def time_ort(session, feeds: dict[int, dict], budget: Budget, progress=None) -> dict:
    """``{batch: summary}`` for an ONNX Runtime session over prepared feeds per batch size."""
    out = {}
    for batch, feed in feeds.items():
        if progress is not None:
            progress(f"onnxruntime batch {batch}")
        out[batch] = summarise(time_calls(lambda: session.run(None, feed), budget), batch)
    return out


def time_torch(model, inputs: dict[int, tuple], budget: Budget, threads: int, device: str = "cpu",
               progress=None, features: bool = False) -> dict:
    """``{batch: summary}`` for torch eager on ``model`` (``no_grad``, ``threads`` CPU threads),
    the same raw samples as ONNX Runtime gets; on CUDA each call is synchronised. ``features``:
    time the extractor alone (what a split export's graph computes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device == "cuda" else None
    out = {}
    try:
        with torch.no_grad():
            for batch, (x, t) in inputs.items():
                if progress is not None:
                    progress(f"torch {device} batch {batch}")
                xt = torch.from_numpy(x).to(device)
                tt = None if t is None else torch.from_numpy(t).to(device)
                call = (lambda: model.forward_features(xt)) if features else (lambda: model(xt, tt))
                out[batch] = summarise(time_calls(call, budget, sync), batch)
    finally:
        torch.set_num_threads(before)
    return out


def learning_cost(load_model: Callable[[], object], x: np.ndarray, y: np.ndarray,
                  budget: Budget, shots: int = 5) -> dict:
    """Microseconds per sample of ``Model.learn`` (at batch 1 and at ``len(x)``) and of
    ``learn_class`` with ``shots`` samples, each on a freshly loaded model; ``learn_class`` gets a
    new label per call, so every timed call adds a class as a device would."""
    reps = max(3, min(budget.runs or 100, 100))
    model = load_model()
    one = time_calls(lambda: model.learn(x[:1], y[:1]), Budget(runs=reps))
    model = load_model()
    batch = time_calls(lambda: model.learn(x, y), Budget(runs=reps))
    model = load_model()
    first = int(np.max(model.classes)) + 1
    labels = iter(range(first, first + 10 * reps + Budget(runs=reps).warmup + 10))
    few = x[:shots]
    news = time_calls(lambda: model.learn_class(few, next(labels)), Budget(runs=reps))
    return {"learn_us_per_sample_b1": percentile(one, 50) / 1e3,
            "learn_us_per_sample": percentile(batch, 50) / 1e3 / len(x),
            "learn_batch": len(x),
            "learn_class_us_per_sample": percentile(news, 50) / 1e3 / shots,
            "learn_class_shots": shots, "calls": reps}

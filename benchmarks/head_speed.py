"""Costs of the gradient-free heads in the device runtime (issue #10's speed targets), numpy only:

1. ``head.learn`` in microseconds per sample on 400-dimensional features, 10 classes, at batch 1
   and batch 256 (targets <= 20 and <= 2 us a sample);
2. ``head.add_class`` from 5 shots (what ``Model.learn_class`` costs past the extractor's forward
   pass, target < 1 ms), and ``head.scores`` at batch 1 for reference, also as the first call
   after a ``learn`` (where slda refits its metric, an eigendecomposition of its ``(D, D)``
   scatter);
3. ``add_class`` on a long stream: the head taught ``--long`` classes one at a time from 5 shots
   each; the median and the worst of the last 100 classes (a head's arrays grow with it).

Each figure is the best of ``--rounds`` rounds of many calls (the least disturbed by a shared
machine); numpy's BLAS gets one thread (``OPENBLAS_NUM_THREADS=1`` unless set), as on a device.
A plain numpy step timed beside each head, round by round (:func:`reference_steps`), gives every
``learn`` figure as a ratio too (the median of the rounds' ratios), which the machine's speed of
the moment cancels from.

    python benchmarks/head_speed.py [--rounds 15] [--json OUT.json]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEADS = {"hebbian": ("hebbian", {}), "hebbian-oja": ("hebbian", {"oja": True}),
         "competitive": ("competitive", {"per_class": 3}),
         "competitive-lvq": ("competitive", {"per_class": 3, "lvq": True}),
         "neural-gas": ("neural-gas", {"per_class": 5}), "slda": ("slda", {"shrink": 1.0})}
D, CLASSES = 400, 10


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1e3


def grown(name: str, rng):
    from edgelll.runtime.gradient_free import empty_head

    kind, params = HEADS[name]
    head = empty_head(kind, D, **params)
    for c in range(CLASSES):
        head.add_class(rng.random((20, D), dtype=np.float32), c)
    return head


def costs(name: str, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    head, out, ref = grown(name, rng), {}, reference_steps()
    for batch, calls in ((1, 500), (256, 10)):
        f = rng.random((batch, D), dtype=np.float32)
        y = rng.integers(0, CLASSES, batch)
        per_call_us(lambda: head.learn(f, y), max(1, calls // 5))  # warm-up
        fn, ref_calls = ref[batch]
        pairs = [(per_call_us(lambda: head.learn(f, y), calls), per_call_us(fn, ref_calls))
                 for _ in range(rounds)]  # head and reference side by side, round by round
        out[f"learn_us_per_sample_b{batch}"] = min(h for h, _ in pairs) / batch
        out[f"reference_us_per_sample_b{batch}"] = min(r for _, r in pairs) / batch
        out[f"ratio_b{batch}"] = statistics.median(h / r for h, r in pairs)
    q = rng.random((1, D), dtype=np.float32)
    out["scores_us_b1"] = min(per_call_us(lambda: head.scores(q), 500) for _ in range(rounds))
    f1, y1 = rng.random((1, D), dtype=np.float32), np.array([3])

    def first_scores() -> float:
        head.learn(f1, y1)
        start = time.perf_counter_ns()
        head.scores(q)
        return (time.perf_counter_ns() - start) / 1e3

    out["scores_after_learn_us_b1"] = statistics.median(first_scores() for _ in range(max(20, rounds)))
    shots = rng.random((5, D), dtype=np.float32)

    def add() -> float:
        h = grown(name, np.random.default_rng(1))
        start = time.perf_counter_ns()
        h.add_class(shots, CLASSES)
        return (time.perf_counter_ns() - start) / 1e3

    out["learn_class_5_shots_us"] = statistics.median(add() for _ in range(max(20, rounds)))
    return out


def reference_steps():
    """Plain numpy learning steps, timed beside every head so that each figure reads as a ratio
    to them and the machine's speed of the moment cancels: at batch 1 a running class sum's
    update of one sample (two in-place adds), at batch 256 the class sums of a batch (one-hot^T
    x): what the cheapest rule, NCM's, costs without a head around it. ``{batch: (fn, calls)}``."""
    rng = np.random.default_rng(3)
    sums, counts = np.zeros((CLASSES, D), np.float32), np.zeros(CLASSES, np.float32)
    x1 = rng.random((1, D), dtype=np.float32)
    xb = rng.random((256, D), dtype=np.float32)
    onehot = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, 256)]

    def one() -> None:
        sums[3] += x1[0]
        counts[3] += 1.0

    return {1: (one, 500), 256: (lambda: onehot.T @ xb, 10)}


def long_stream(name: str, classes: int) -> dict:
    """``add_class`` from 5 shots for classes 1..``classes`` of one head: the last 100 timed."""
    from edgelll.runtime.gradient_free import empty_head

    kind, params = HEADS[name]
    head, rng, times = empty_head(kind, D, **params), np.random.default_rng(2), []
    for c in range(classes):
        shots = rng.random((5, D), dtype=np.float32)
        start = time.perf_counter_ns()
        head.add_class(shots, c)
        times.append((time.perf_counter_ns() - start) / 1e3)
    last = times[-100:]
    return {"classes": classes, "median_us": statistics.median(last), "max_us": max(last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--long", type=int, default=600,
                        help="classes of the long-stream add_class measurement (0: skip it)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.rounds < 1 or args.long < 0:
        print("error: --rounds must be at least 1 and --long at least 0", file=sys.stderr)
        sys.exit(2)
    results = {name: costs(name, args.rounds) for name in HEADS}
    if args.long:
        for name in HEADS:
            results[name]["long_stream"] = long_stream(name, args.long)
    print(f"{'head':<16} {'b1 us/sample':>13} {'b256 us/sample':>15} {'scores b1 us':>13} "
          f"{'after learn':>12} {'learn_class us':>15} {'b1 / ref':>9} {'b256 / ref':>11}")
    for name, r in results.items():
        print(f"{name:<16} {r['learn_us_per_sample_b1']:>13.1f} {r['learn_us_per_sample_b256']:>15.2f}"
              f" {r['scores_us_b1']:>13.1f} {r['scores_after_learn_us_b1']:>12.1f}"
              f" {r['learn_class_5_shots_us']:>15.1f}"
              f" {r['ratio_b1']:>8.1f}x {r['ratio_b256']:>10.1f}x")
    print("x / ref: the median over rounds of the head's time over a plain numpy step's timed "
          "beside it (batch 1: a class sum's update of one sample, best "
          f"{min(r['reference_us_per_sample_b1'] for r in results.values()):.2f} us; batch 256: a "
          f"batch's class sums, best {min(r['reference_us_per_sample_b256'] for r in results.values()):.3f}"
          " us a sample)")
    if args.long:
        print(f"\nadd_class from 5 shots at {args.long} classes (the last 100: median, worst us)")
        for name, r in results.items():
            print(f"{name:<16} {r['long_stream']['median_us']:>8.0f} {r['long_stream']['max_us']:>9.0f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

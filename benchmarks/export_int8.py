"""int8 export benchmark: file size, accuracy and batch-1 latency of int8 static against fp32.

Protocol (issue #9): Split MNIST, class scenario, 5 tasks, MLP 784-400-400-10, reservoir replay
of 2000 exemplars, Adam lr 1e-3, batch 128, one epoch per experience (as benchmarks/split_mnist.py
trains it). The run is exported as ``onnx`` (fp32), ``onnx-int8`` (static QDQ, per-channel
weights, calibrated on the replay buffer) and ``onnx-int8-dynamic``, by ``edgelll.export.export_run``, which
re-measures the accuracy matrix of every quantised checkpoint and times both graphs at batch 1 in
one process (warm-up, ``perf_counter_ns``, medians of alternating rounds). Targets: int8 file at
most 0.3x the fp32 bytes, ACC within 1 point of fp32. Usage:

    EDGELLL_DATA=FOLDER python benchmarks/export_int8.py [--data PATH/mnist.npz] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = (os.path.join(os.environ["EDGELLL_DATA"], "mnist.npz")
                if os.environ.get("EDGELLL_DATA") else None)
CONFIG = {"data": None, "stream": "split", "scenario": "class", "tasks": 5, "model": "mlp",
          "model_args": {"hidden": [400, 400]}, "strategies": ["replay"],
          "strategy_args": {"replay": {"size": 2000}}, "epochs": 1, "batch_size": 128,
          "lr": 1e-3, "optimizer": "adam", "device": "cpu", "seed": 0}
TARGET_RATIO, TARGET_DROP = 0.3, 1.0


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="mnist.npz (default $EDGELLL_DATA/mnist.npz)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--calib-samples", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3000, help="timed batch-1 runs per graph")
    ap.add_argument("--out", type=Path, default=None,
                    help="keep the run and exports here (an existing run there is reused)")
    args = ap.parse_args()
    if not args.data:
        fail("give the MNIST file with --data PATH/mnist.npz or the EDGELLL_DATA variable (the "
             "folder holding mnist.npz)")
    if not Path(args.data).expanduser().is_file():
        fail(f"{args.data} does not exist; give --data PATH/mnist.npz")

    import edgelll
    from edgelll.export import ExportOptions, export_run

    work = args.out or Path(tempfile.mkdtemp(prefix="edgelll-export-bench-"))
    run_dir = work / "replay-mnist"
    cfg = edgelll.resolve({**CONFIG, "data": f"mnist={Path(args.data).expanduser()}"})
    start = time.perf_counter()
    if not (run_dir / "metrics.json").is_file():  # a kept --out run is exported again as is
        try:
            edgelll.learn(cfg, run_dir=run_dir, plot="none")
        except edgelll.EdgelllError as exc:
            fail(str(exc))
    trained = time.perf_counter() - start
    common = dict(threads=args.threads, latency_runs=args.runs, force=True)
    fp32 = export_run(run_dir, ExportOptions(format="onnx", **common))
    int8 = export_run(run_dir, ExportOptions(format="onnx-int8", calib_samples=args.calib_samples,
                                             max_acc_drop=100.0, **common))
    dyn = export_run(run_dir, ExportOptions(format="onnx-int8-dynamic", max_acc_drop=100.0,
                                            **common))
    t = int8["timing"]
    ratio = int8["bytes"] / fp32["bytes"]
    acc32, acc8 = int8["fp32_metrics"]["acc"], int8["metrics"]["acc"]
    rows = table(fp32, int8, args.threads, trained) + [
        ("dynamic int8: bytes ratio", f"{dyn['bytes'] / fp32['bytes']:.3f}x"),
        ("dynamic int8: ACC drop", f"{dyn['acc_drop_points']:+.2f} points"),
        ("dynamic int8: batch-1 median", f"{dyn['timing']['int8_median_us']:.1f} us against "
                                         f"fp32 {dyn['timing']['fp32_median_us']:.1f} us")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for entry in (int8, dyn):
        if "note" in entry["timing"]:
            print(f"note ({entry['format']}): {entry['timing']['note']}")
    print(json.dumps({"ratio": ratio, "acc_fp32": acc32, "acc_int8": acc8,
                      "fp32_us": t["fp32_median_us"], "int8_us": t["int8_median_us"]}))


def table(fp32: dict, int8: dict, threads: int, trained: float) -> list[tuple[str, str]]:
    t = int8["timing"]
    ratio = int8["bytes"] / fp32["bytes"]
    acc32, acc8 = int8["fp32_metrics"]["acc"], int8["metrics"]["acc"]
    return [
        ("fp32 file bytes", f"{fp32['bytes']:,}"),
        ("int8 file bytes", f"{int8['bytes']:,}"),
        ("int8 / fp32 bytes", f"{ratio:.3f}x (target <= {TARGET_RATIO}x: "
                              f"{'met' if ratio <= TARGET_RATIO else 'MISSED'})"),
        ("ACC fp32 (ORT, re-measured)", f"{acc32:.2%} (run: {fp32['metrics']['acc']:.2%})"),
        ("ACC int8 (re-measured)", f"{acc8:.2%}"),
        ("ACC drop", f"{int8['acc_drop_points']:+.2f} points (target <= {TARGET_DROP}: "
                     f"{'met' if int8['acc_drop_points'] <= TARGET_DROP else 'MISSED'})"),
        ("forgetting fp32 / int8", f"{int8['fp32_metrics']['forgetting']:.2%} / "
                                   f"{int8['metrics']['forgetting']:.2%}"),
        ("batch-1 median fp32", f"{t['fp32_median_us']:.1f} us"),
        ("batch-1 median int8", f"{t['int8_median_us']:.1f} us "
                                f"({t['int8_speedup']:.2f}x fp32 speed)"),
        ("calibration", f"{int8['quantization']['calibration']}, "
                        f"{int8['quantization']['samples']} samples"),
        ("parity fp32 vs torch", f"max |diff| {fp32['parity']['max_abs_diff']:.2e}, labels agree "
                                 f"{fp32['parity']['label_agreement']:.2%}"),
        ("threads / cores", f"{threads} / {os.cpu_count()}"),
        ("training s / export s", f"{trained:.1f} / {fp32['seconds'] + int8['seconds']:.1f}"),
    ]


if __name__ == "__main__":
    main()

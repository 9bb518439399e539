"""`edgelll profile` of three Split MNIST runs: naive, replay, and replay's int8 export (issue #9).

Protocol: class scenario, 5 tasks, MLP 784-400-400-10, Adam lr 1e-3, batch 128, one epoch per
experience, seed 0; replay with 2000 exemplars. replay is exported to int8 (static QDQ) first;
then one `edgelll profile naive replay replay/export/model-int8.onnx` runs as a whole process
(its fp32 and split exports made on the fly, as a user would run it) and is timed end to end
(target: under a minute on the 2-core reference host). Checks, from its profile.json:

- the Pareto front of (p50 batch-1 latency, forgetting) holds replay-int8 and replay;
- the exported fp32 MLP at batch 1 in ONNX Runtime takes at most 0.6x torch eager (same
  threads, ``no_grad``), for the replay model.

Usage:

    EDGELLL_DATA=FOLDER python benchmarks/profile_runs.py [--data PATH/mnist.npz] [--runs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = (os.path.join(os.environ["EDGELLL_DATA"], "mnist.npz")
                if os.environ.get("EDGELLL_DATA") else None)
PROTOCOL = ["--stream", "split", "--scenario", "class", "--tasks", "5", "--model", "mlp",
            "--epochs", "1", "--batch-size", "128", "--lr", "1e-3", "--optimizer", "adam",
            "--device", "cpu", "--seed", "0", "--quiet", "--plot", "none"]
STRATEGIES = {"naive": [], "replay": ["--set", "replay.size=2000"]}
RATIO_TARGET = 0.6
SECONDS_TARGET = 60.0


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"command failed ({proc.returncode}): {' '.join(cmd)}: "
             f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    run.stdout = proc.stdout
    return time.perf_counter() - start


def p50_b1(entry: dict, backend: str) -> float | None:
    b1 = entry["latency"].get(backend, {}).get("1")
    return None if b1 is None else b1["p50_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="mnist.npz (default: $EDGELLL_DATA/mnist.npz)")
    ap.add_argument("--runs", type=int, default=1000, help="edgelll profile --runs")
    ap.add_argument("--threads", type=int, default=1, help="edgelll profile --threads")
    ap.add_argument("--keep", type=Path, help="keep the runs and the profile in this folder")
    args = ap.parse_args()
    if not args.data:
        fail("give the MNIST file with --data PATH/mnist.npz or the EDGELLL_DATA environment "
             "variable (the folder holding mnist.npz)")
    if not Path(args.data).expanduser().is_file():
        fail(f"{args.data} does not exist; give the MNIST .npz file (--data or EDGELLL_DATA)")
    edgelll = shutil.which("edgelll") or fail("edgelll is not installed (make install)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="edgelll-profile-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(args, edgelll, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "profile_runs.json").write_text(json.dumps(result, indent=2))
    ok = result["front_ok"] and result["ratio_ok"] and result["seconds_ok"]
    sys.exit(0 if ok else 1)


def measure(args, edgelll: str, work: Path) -> dict:
    data = ["--data", f"mnist={Path(args.data).expanduser()}"]
    train, int8 = {}, None
    for name, extra in STRATEGIES.items():
        if (work / name / "metrics.json").is_file():  # --keep from an earlier run: reuse it
            print(f"reusing {work / name}")
            continue
        train[name] = run([edgelll, "learn", *data, *PROTOCOL, "-s", name, *extra, "--out",
                           str(work / name)])
        print(f"trained {name} in {train[name]:.1f} s")
    if not (work / "replay" / "export" / "model-int8.onnx").is_file():
        int8 = run([edgelll, "export", str(work / "replay"), "--format", "onnx-int8"])
        print(f"exported replay to int8 in {int8:.1f} s")
    for name in STRATEGIES:  # the profile makes these on the fly, as for a fresh user
        for stem in ("model.onnx", "model-extractor.onnx", "model-extractor-head.npz"):
            (work / name / "export" / stem).unlink(missing_ok=True)
    targets = [work / "naive", work / "replay", work / "replay" / "export" / "model-int8.onnx"]
    seconds = run([edgelll, "profile", *map(str, targets), "--runs", str(args.runs),
                   "--threads", str(args.threads), "--out", str(work / "profile"), "--force"])
    print(run.stdout)
    report = json.loads((work / "profile" / "profile.json").read_text())
    naive, replay, replay8 = report["targets"]
    ratio = p50_b1(replay, "ort-cpu") / p50_b1(replay, "torch-cpu")
    result = {
        "seconds": seconds, "seconds_ok": seconds < SECONDS_TARGET,
        "front": {e["label"]: e["front"] for e in report["targets"]},
        "front_ok": bool(replay["front"] and replay8["front"]),
        "ort_over_torch_b1": ratio, "ratio_ok": ratio <= RATIO_TARGET,
        "p50_b1_ms": {e["label"]: {k: p50_b1(e, k) for k in e["latency"]}
                      for e in report["targets"]},
        "forgetting": {e["label"]: e["metrics"]["forgetting"] for e in report["targets"]},
        "acc": {e["label"]: e["metrics"]["acc"] for e in report["targets"]},
        "model_bytes": {e["label"]: e["model_bytes"] for e in report["targets"]},
        "peak_rss_bytes": {e["label"]: e["memory"].get("peak_rss_bytes") for e in report["targets"]},
        "learning": {e["label"]: e["learning"] for e in report["targets"]},
        "train_seconds": train, "int8_export_seconds": int8, "runs": args.runs,
        "threads": args.threads, "host_cores": os.cpu_count(),
    }
    print(f"edgelll profile of 3 targets: {seconds:.1f} s (target < {SECONDS_TARGET:.0f} s): "
          f"{'ok' if result['seconds_ok'] else 'MISSED'}")
    print(f"front: {result['front']} -> replay and replay int8 on it: "
          f"{'ok' if result['front_ok'] else 'MISSED'}")
    print(f"fp32 MLP batch 1, ONNX Runtime / torch eager: {ratio:.2f}x (target <= {RATIO_TARGET}): "
          f"{'ok' if result['ratio_ok'] else 'MISSED'}")
    return result


if __name__ == "__main__":
    main()

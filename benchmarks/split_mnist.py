"""Split MNIST benchmark: edgelll's strategies against a bare PyTorch loop, in one run.

Protocol (issue #2): class scenario, 5 tasks, MLP 784-400-400-10, Adam lr 1e-3, batch 128, one epoch
per experience. Every command runs as a whole process, alternating with the bare loop, several
times; the table gives medians and the per-pair ratio of wall time against the bare loop, so a
machine that drifts in speed does not skew the comparison. Peak RSS is the child's own maximum
resident set (from wait4). Usage:

    python benchmarks/split_mnist.py [--data ../shared/data/mnist.npz] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mnist.npz"
PROTOCOL = ["--stream", "split", "--scenario", "class", "--tasks", "5", "--model", "mlp",
            "--epochs", "1", "--batch-size", "128", "--lr", "1e-3", "--optimizer", "adam",
            "--device", "cpu", "--seed", "0", "--quiet"]
STRATEGIES = {"naive": [], "joint": [], "replay": ["--set", "replay.size=2000"], "ewc": []}
TARGETS = {"naive": 1.3, "joint": None, "replay": 1.6, "ewc": 1.6}


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    edgelll = shutil.which("edgelll") or sys.exit("edgelll is not installed (make install)")
    bare = [sys.executable, str(HERE / "bare_loop.py"), args.data]
    work = Path(tempfile.mkdtemp(prefix="edgelll-bench-"))
    rows = []
    try:
        timed(bare)  # warm the file cache
        for name in args.strategies.split(","):
            ratios, walls, bare_walls, rss, metrics = [], [], [], [], None
            for rep in range(args.repeats):
                out = work / f"{name}-{rep}"
                cmd = [edgelll, "learn", "--data", f"mnist={args.data}", "-s", name,
                       *STRATEGIES[name], *PROTOCOL, "--out", str(out)]
                w_bare, _ = timed(bare)
                w, peak = timed(cmd)
                ratios.append(w / w_bare)
                walls.append(w)
                bare_walls.append(w_bare)
                rss.append(peak)
                metrics = json.loads((out / "metrics.json").read_text())
            rows.append({"strategy": name, "seconds": statistics.median(walls),
                         "bare_seconds": statistics.median(bare_walls),
                         "ratio": statistics.median(ratios), "target": TARGETS.get(name),
                         "acc": metrics["acc"], "bwt": metrics["bwt"],
                         "forgetting": metrics["forgetting"], "peak_rss_mb": max(rss) / 1e6,
                         "state_mib": metrics["memory_bytes"]["total"] / 2**20})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| strategy | seconds (median) | bare loop (median) | ratio (median of pairs) | target | ACC | BWT | forgetting | peak RSS | learner state |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = f"<= {r['target']}x" if r["target"] else "-"
        print(f"| {r['strategy']} | {r['seconds']:.2f} | {r['bare_seconds']:.2f} | {r['ratio']:.2f}x | "
              f"{target} | {r['acc'] * 100:.2f}% | {r['bwt'] * 100:+.2f}% | {r['forgetting'] * 100:.2f}% | "
              f"{r['peak_rss_mb']:.0f} MB | {r['state_mib']:.2f} MiB |")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "split_mnist.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

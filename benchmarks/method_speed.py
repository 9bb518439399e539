"""Each method's whole-process time on the Split MNIST job relative to `naive`, in one run.

Same protocol as split_mnist.py (class scenario, 5 tasks, MLP 784-400-400-10, Adam lr 1e-3, batch
128, one epoch per experience). Each method's command alternates with naive's, several times; the
table gives the median over pairs of the wall-time ratio and issue #3's target for it. Each run's
detached accuracy plot is waited for outside the timed window, as in split_mnist.py.

    EDGELLL_DATA=PATH/mnist.npz python benchmarks/method_speed.py [--repeats 3] [--methods ewc,si]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from split_mnist import DEFAULT_DATA, PROTOCOL, data_path, timed, wait_for_plot

METHODS = {
    "ewc": (["-s", "ewc"], 1.3), "online-ewc": (["-s", "online-ewc"], 1.3),
    "mas": (["-s", "mas"], 1.3), "si": (["-s", "si"], 1.3), "lwf": (["-s", "lwf"], 1.3),
    "replay": (["-s", "replay", "--set", "replay.size=2000"], 1.6),
    "agem": (["-s", "agem"], 1.6), "bic": (["-s", "replay", "-s", "bic"], 1.6),
    "gem": (["-s", "gem"], 2.5), "generative": (["-s", "generative"], 3.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="mnist.npz (default: $EDGELLL_DATA/mnist.npz)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    args.data = data_path(args.data)
    edgelll = shutil.which("edgelll") or sys.exit("edgelll is not installed (make install)")
    work = Path(tempfile.mkdtemp(prefix="edgelll-speed-"))

    def cmd(name: str, extra: list[str], rep: int) -> list[str]:
        return [edgelll, "learn", "--data", f"mnist={args.data}", *extra, *PROTOCOL,
                "--out", str(work / f"{name}-{rep}")]

    rows = []
    try:
        for name in args.methods.split(","):
            extra, target = METHODS[name]
            ratios, accs = [], []
            for rep in range(args.repeats):
                w_naive, _ = timed(cmd(f"naive-{name}", ["-s", "naive"], rep))
                wait_for_plot(work / f"naive-{name}-{rep}")
                w, _ = timed(cmd(name, extra, rep))
                wait_for_plot(work / f"{name}-{rep}")
                ratios.append(w / w_naive)
                accs.append(json.loads((work / f"{name}-{rep}" / "metrics.json").read_text())["acc"])
            ratio = statistics.median(ratios)
            rows.append((name, ratio, target, statistics.mean(accs)))
            print(f"  {name}: {ratio:.2f}x", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| method | time vs naive (median of pairs) | target | ACC (class, 1 epoch) |")
    print("|---|---|---|---|")
    for name, ratio, target, acc in rows:
        mark = "ok" if ratio <= target else "OVER"
        print(f"| {name} | {ratio:.2f}x | <= {target}x ({mark}) | {acc * 100:.2f}% |")


if __name__ == "__main__":
    main()

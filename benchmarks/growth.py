"""Networks that grow (issue #11): progressive neural networks against a fixed network with replay,
on Split MNIST and Split Fashion-MNIST, in one run.

Protocol: 5 tasks of 2 classes, MLP 784-400-400 columns, Adam lr 1e-3, batch 128, one epoch per
task, seeds 0..S-1; replay keeps 2000 exemplars. Rows:

- ``replay`` (class and task scenario): the network at its full size from the start;
- ``net2net + replay``: the same architecture started at a quarter of the width (100-100), grown
  by ``-s net2net`` under a cap of 60% of the full network's parameters (the issue's target:
  within 1 point of the full network's ACC with at most 60% of its parameters), growing when the
  training accuracy on an experience is below 99% after 50 steps, at most twice an experience;
- ``progressive`` (task scenario; class-incremental is refused, it needs task ids): a column per
  task with lateral adapters, at ``width_ratio`` 1 and 0.5 (later columns half as wide);
- ``progressive + replay`` (task scenario): the retention method composed with the columns.

Reported per row: ACC and forgetting (mean ± std over the seeds), parameters at the end (their
range over the seeds where growth differs), parameters per point of ACC, and wall time of the
run (median). Not measured here yet: Net2Net-initialised growth against a randomly initialised
network of the grown size (the paper's steps-to-accuracy claim).

    python benchmarks/growth.py --data-dir FOLDER [--seeds 3] [--sets mnist,fashion-mnist]
           [--json benchmarks/results/growth.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgelll  # noqa: E402
from edgelll.data import load_dataset  # noqa: E402

FILES = {"mnist": "mnist.npz", "fashion-mnist": "fashion_mnist.npz"}
BASE = {"stream": "split", "tasks": 5, "model": "mlp", "epochs": 1, "batch_size": 128,
        "lr": 1e-3, "optimizer": "adam", "device": "cpu", "checkpoints": False}
SMALL = {"model_args": {"hidden": (100, 100)}}  # a quarter of the full width to start from
FULL_PARAMS = 478_410  # 784-400-400 with the 10-class head
GROW = {"net2net": {"max_params": int(0.6 * FULL_PARAMS), "target": 0.99, "check_every": 50,
                    "per_experience": 2}}
ROWS = {
    "replay, class": {"scenario": "class", "strategies": ["replay"], "replay": {"size": 2000}},
    "net2net + replay, class": {"scenario": "class", "strategies": ["net2net", "replay"],
                                "replay": {"size": 2000}, **SMALL, **GROW},
    "replay, task": {"scenario": "task", "strategies": ["replay"], "replay": {"size": 2000}},
    "net2net + replay, task": {"scenario": "task", "strategies": ["net2net", "replay"],
                               "replay": {"size": 2000}, **SMALL, **GROW},
    "progressive, task": {"scenario": "task", "strategies": ["progressive"]},
    "progressive 0.5, task": {"scenario": "task", "strategies": ["progressive"],
                              "progressive": {"width_ratio": 0.5}},
}


def one(data, row: dict, seed: int) -> dict:
    start = time.perf_counter()
    result = edgelll.learn(edgelll.resolve({**BASE, **row, "seed": seed}), data=data, plot="none")
    params = sum(p.numel() for p in result.model.parameters())
    return {"acc": result.metrics["acc"], "forgetting": result.metrics["forgetting"],
            "params": params, "seconds": time.perf_counter() - start}


def spread(seeds: list[dict]) -> str:
    lo, hi = min(s["params"] for s in seeds), max(s["params"] for s in seeds)
    return "" if lo == hi else f" ({lo:,}-{hi:,})"


def table(name: str, runs: dict) -> str:
    out = [f"#### Split {name} ({len(next(iter(runs.values())))} seeds)", "",
           "| run | ACC (%) | forgetting (%) | parameters | parameters per ACC point | wall (s) |",
           "|---|---|---|---|---|---|"]
    for row, seeds in runs.items():
        acc = [100 * s["acc"] for s in seeds]
        fgt = [100 * s["forgetting"] for s in seeds]
        params = int(np.mean([s["params"] for s in seeds]))
        sd = lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0  # noqa: E731
        out.append(f"| {row} | {np.mean(acc):.2f} ± {sd(acc):.2f} | {np.mean(fgt):.2f} ± "
                   f"{sd(fgt):.2f} | {params:,}{spread(seeds)} | {params / np.mean(acc):,.0f} | "
                   f"{statistics.median(s['seconds'] for s in seeds):.1f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGELLL_DATA"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", default="mnist,fashion-mnist")
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "growth.json")
    args = parser.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    bad = [s for s in sets if s not in FILES]
    if not args.data_dir or bad:
        print(f"error: unknown --sets {', '.join(bad)}; choose from {', '.join(FILES)}" if bad else
              "error: give --data-dir FOLDER (with mnist.npz, fashion_mnist.npz) or set "
              "EDGELLL_DATA", file=sys.stderr)
        sys.exit(2)
    missing = [p for p in (Path(args.data_dir) / FILES[s] for s in sets) if not p.is_file()]
    if missing:
        print(f"error: {missing[0]} does not exist; give --data-dir the folder that holds it",
              file=sys.stderr)
        sys.exit(2)
    results = {}
    for name in sets:
        data = load_dataset(f"{name}={Path(args.data_dir) / FILES[name]}")
        runs = {row: [one(data, cfg, seed) for seed in range(args.seeds)]
                for row, cfg in ROWS.items()}
        results[name] = runs
        print(table(name, runs) + "\n", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.json)  # after every set: a later failure keeps what ran


if __name__ == "__main__":
    main()

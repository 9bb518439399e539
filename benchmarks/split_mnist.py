"""Split MNIST benchmark: edgelll's strategies against a bare PyTorch loop, in one run.

Protocol (issue #2): class scenario, 5 tasks, MLP 784-400-400-10, Adam lr 1e-3, batch 128, one epoch
per experience. Every command runs as a whole process, alternating with the bare loop, several
times; the table gives medians and the per-pair ratio of wall time against the bare loop, so a
machine that drifts in speed does not skew the comparison. Peak RSS is the child's own maximum
resident set (from wait4). edgelll's CLI draws accuracy.png in a detached process after its result
is written (issue #8); the benchmark waits for that plot outside the timed window, so it never
runs during the next timed command, and reports how long after exit it appeared.

`--breakdown` instead times the phases of the naive job inside one process (import, data,
optimizer construction, training, evaluation, checkpoints, plot), alternating the current code
with the code before issue #8 (torch.optim, plot drawn inline). Usage:

    EDGELLL_DATA=FOLDER python benchmarks/split_mnist.py [--repeats 5] [--breakdown] [--device cuda]
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
# EDGELLL_DATA names the folder that holds mnist.npz (as for every benchmark and `make bench`).
DEFAULT_DATA = (os.path.join(os.environ["EDGELLL_DATA"], "mnist.npz")
                if os.environ.get("EDGELLL_DATA") else None)
PROTOCOL = ["--stream", "split", "--scenario", "class", "--tasks", "5", "--model", "mlp",
            "--epochs", "1", "--batch-size", "128", "--lr", "1e-3", "--optimizer", "adam",
            "--seed", "0", "--quiet"]
STRATEGIES = {"naive": [], "joint": [], "replay": ["--set", "replay.size=2000"], "ewc": []}
TARGETS = {"naive": 1.0, "joint": None, "replay": 1.1, "ewc": 1.1}
PHASES = ["import torch", "import edgelll", "data", "optimizer", "training", "evaluation",
          "checkpoints", "plot"]


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    timed.stdout = proc.stdout.read().decode()
    return wall, usage.ru_maxrss * 1024


def wait_for_plot(run_dir: Path, timeout: float = 300.0) -> float:
    """Seconds until the detached plot of ``run_dir`` is in place (after the run has exited)."""
    start = time.perf_counter()
    while not (run_dir / "accuracy.png").exists():
        if time.perf_counter() - start > timeout:
            sys.exit(f"{run_dir / 'accuracy.png'} did not appear within {timeout:.0f} s")
        time.sleep(0.02)
    return time.perf_counter() - start


def data_path(given: str | None) -> str:
    if not given:
        sys.exit("give the MNIST file with --data PATH or the EDGELLL_DATA environment variable")
    return given


def compare(args, edgelll: str, work: Path) -> list[dict]:
    bare = [sys.executable, str(HERE / "bare_loop.py"), args.data, args.device]
    timed(bare)  # warm the file cache
    rows = []
    for name in args.strategies.split(","):
        ratios, walls, bare_walls, rss, plots, metrics = [], [], [], [], [], None
        for rep in range(args.repeats):
            out = work / f"{name}-{rep}"
            cmd = [edgelll, "learn", "--data", f"mnist={args.data}", "-s", name,
                   *STRATEGIES[name], *PROTOCOL, "--device", args.device, "--out", str(out)]
            w_bare, _ = timed(bare)
            w, peak = timed(cmd)
            plots.append(wait_for_plot(out))
            ratios.append(w / w_bare)
            walls.append(w)
            bare_walls.append(w_bare)
            rss.append(peak)
            metrics = json.loads((out / "metrics.json").read_text())
        rows.append({"strategy": name, "seconds": statistics.median(walls),
                     "bare_seconds": statistics.median(bare_walls), "ratios": ratios,
                     "ratio": statistics.median(ratios), "target": TARGETS.get(name),
                     "plot_after_exit": statistics.median(plots),
                     "acc": metrics["acc"], "bwt": metrics["bwt"],
                     "forgetting": metrics["forgetting"], "peak_rss_mb": max(rss) / 1e6,
                     "state_mib": metrics["memory_bytes"]["total"] / 2**20})
        print(f"  {name}: ratios {' '.join(f'{r:.2f}' for r in ratios)}", flush=True)
    print("| strategy | seconds (median) | bare loop (median) | ratio (median of pairs) | target | "
          "plot ready after exit | ACC | BWT | forgetting | peak RSS | learner state |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = f"<= {r['target']}x" if r["target"] else "-"
        print(f"| {r['strategy']} | {r['seconds']:.2f} | {r['bare_seconds']:.2f} | {r['ratio']:.2f}x | "
              f"{target} | {r['plot_after_exit']:.1f} s | {r['acc'] * 100:.2f}% | "
              f"{r['bwt'] * 100:+.2f}% | {r['forgetting'] * 100:.2f}% | {r['peak_rss_mb']:.0f} MB | "
              f"{r['state_mib']:.2f} MiB |")
    return rows


def breakdown(args, work: Path) -> list[dict]:
    """Phase times of the naive job, current code against the code before issue #8, alternated."""
    runs: dict[str, list[dict]] = {"now": [], "before": []}
    for rep in range(args.repeats):
        for mode in runs:
            out = work / f"{mode}-{rep}"
            cli = ["learn", "--data", f"mnist={args.data}", "-s", "naive", *PROTOCOL,
                   "--device", args.device, "--out", str(out),
                   *(["--plot", "inline"] if mode == "before" else [])]
            wall, _ = timed([sys.executable, str(Path(__file__).resolve()), "--child", mode, *cli])
            phases = json.loads(timed.stdout.strip().splitlines()[-1])
            phases["other (startup, exit, rest)"] = wall - sum(phases.values())
            phases["whole process"] = wall
            if mode == "now":
                phases["plot, background (after exit)"] = wait_for_plot(out)
            runs[mode].append(phases)
    keys = [k for k in runs["before"][0]] + ["plot, background (after exit)"]
    print("| phase of the naive job | before #8 (median s) | now (median s) |")
    print("|---|---|---|")
    for k in keys:
        cells = [f"{statistics.median(r[k] for r in runs[m]):.2f}" if k in runs[m][0] else "-"
                 for m in ("before", "now")]
        print(f"| {k} | {cells[0]} | {cells[1]} |")
    return [runs]


def child(mode: str, cli: list[str]) -> None:
    """One naive run inside this process with each phase timed; prints the phases as JSON."""
    t0 = time.perf_counter()
    import torch
    t1 = time.perf_counter()
    import edgelll.learner as L
    import edgelll.plot_job as P
    from edgelll.cli.main import main as cli_main
    phases = {"import torch": t1 - t0, "import edgelll": time.perf_counter() - t1}
    if mode == "before":  # torch's optimizers, as edgelll used them before issue #8
        def torch_optimizer(cfg, model):
            params = [p for p in model.parameters() if p.requires_grad]
            if cfg.optimizer == "adam":
                return torch.optim.Adam(params, lr=cfg.lr)
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
        L.make_optimizer = torch_optimizer
    for owner, attr, phase in ((L, "load_dataset", "data"), (L, "make_optimizer", "optimizer"),
                               (L.Learner, "_train", "training"), (L, "evaluate_all", "evaluation"),
                               (L.Learner, "_save", "checkpoints"), (P, "draw_plot", "plot")):
        setattr(owner, attr, _timing(getattr(owner, attr), phase, phases))
    sys.argv = ["edgelll", *cli]
    try:
        cli_main()
    except SystemExit as exc:
        if exc.code:
            raise
    print(json.dumps(phases))


def _timing(fn, phase: str, phases: dict):
    def wrapper(*a, **kw):
        start = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - start
    return wrapper


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="mnist.npz (default: $EDGELLL_DATA/mnist.npz)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--breakdown", action="store_true", help="phase times of the naive job")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where edgelll and the bare loop train (cuda: data on the GPU for both)")
    args = ap.parse_args()
    args.data = data_path(args.data)
    edgelll = shutil.which("edgelll") or sys.exit("edgelll is not installed (make install)")
    work = Path(tempfile.mkdtemp(prefix="edgelll-bench-"))
    try:
        rows = breakdown(args, work) if args.breakdown else compare(args, edgelll, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (HERE / "out").mkdir(exist_ok=True)
    name = ("split_mnist_breakdown" if args.breakdown else "split_mnist") + (
        "_cuda" if args.device == "cuda" else "") + ".json"
    (HERE / "out" / name).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

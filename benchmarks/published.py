"""Reproduce the published continual-learning tables with `edgelll learn` (issue #3).

Split MNIST (5 tasks) in the class, task and domain scenarios under van de Ven & Tolias's protocol
(MLP 784-400-400-10, Adam lr 1e-3, batch 128, 2000 iterations per task; their per-scenario EWC
lambda and SI c, DGR generator, iCaRL and LwF settings), Hsu et al.'s rehearsal and GEM rows under
Hsu et al.'s own schedule, Permuted MNIST (10 tasks) under the A-GEM paper's settings (MLP 256-256,
SGD lr 0.03, batch 10, one epoch, 256 samples per task, A-GEM's reference batch 256), and the same
Split MNIST tables on Fashion-MNIST. Every run is a whole
`edgelll learn` process writing its own run directory, so finished runs are kept and an
interrupted sweep continues where it stopped. The table gives mean and standard deviation over
seeds beside the published number and the difference.

The data come from ``--data DIR``, by default the folder ``$EDGELLL_DATA``: it holds
``mnist.npz`` and ``fashion_mnist.npz`` (``x_train, y_train, x_test, y_test``), or in their place
folders ``mnist/`` and ``fashion_mnist/`` of the four official IDX files. Nothing is downloaded.

    python benchmarks/published.py --data ~/data --table split-class --seeds 0,1,2
    python benchmarks/published.py --table all --seeds 0,1,2 --jobs 2
    python benchmarks/published.py --table all --report
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_ENV = "EDGELLL_DATA"  # the folder holding mnist.npz and fashion_mnist.npz (or IDX folders)
DATASETS = {"mnist": "mnist", "fashion-mnist": "fashion_mnist"}  # edgelll's name: file stem
OUT = HERE / "out" / "published"

SPLIT = ["--stream", "split", "--tasks", "5", "--model", "mlp", "--set", "model.hidden=400,400",
         "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "128", "--steps", "2000"]
PERMUTED = ["--stream", "permuted", "--scenario", "domain", "--tasks", "10", "--model", "mlp",
            "--set", "model.hidden=256,256", "--optimizer", "sgd", "--lr", "0.03",
            "--batch-size", "10", "--epochs", "1"]

# van de Ven & Tolias's regularisation strengths for Split MNIST, per scenario.
EWC_LAMBDA = {"class": 1e9, "task": 1e5, "domain": 1e10}
SI_C = {"class": 5000, "task": 10, "domain": 50000}
# Their generator for DGR: a VAE with fully connected 400-400 layers and a 100-unit latent, Adam 1e-3,
# one update per iteration.
VAE = ["--set", "generative.hidden=400,400", "--set", "generative.latent=100",
       "--set", "generative.lr=1e-3", "--set", "generative.vae_steps=1"]
HSU = ["--epochs", "4"]
# Split MNIST tables beyond the class scenario keep the methods that have a published number there,
# plus `none` and `offline` as the lower and upper reference.
KEEP = {"class": None,
        "task": {"none", "ewc", "dgr", "dgr+distill", "rehearsal-hsu", "gem-hsu", "offline"},
        "domain": {"none", "rehearsal-hsu", "gem-hsu"}}


def methods(scenario: str) -> dict[str, list[str]]:
    lam, c = EWC_LAMBDA[scenario], SI_C[scenario]
    return {
        "none": ["-s", "naive"],
        "ewc": ["-s", "ewc", "--set", f"ewc.lam={lam}"],
        "online-ewc": ["-s", "online-ewc", "--set", f"online-ewc.lam={lam}"],
        "si": ["-s", "si", "--set", f"si.c={c}"],
        "lwf": ["-s", "lwf", "--set", "lwf.balance=true", "--set", "lwf.pad=true"],
        "dgr": ["-s", "generative", *VAE],
        "dgr+distill": ["-s", "generative", *VAE, "--set", "generative.distill=true"],
        "icarl": ["-s", "icarl", "--set", "icarl.size=2000", "--set", "icarl.T=2"],
        "rehearsal": ["-s", "replay", "--set", "replay.size=2000"],
        "gem": ["-s", "gem", "--set", "gem.size=2000"],
        # Hsu et al.'s own protocol for their numbers (their released scripts): 4 epochs per task,
        # a memory of 1100 samples (their static memory equals online EWC's), GEM with SGD 0.01.
        "rehearsal-hsu": ["-s", "replay", "--set", "replay.size=1100", *HSU],
        "gem-hsu": ["-s", "gem", "--set", "gem.size=1100", *HSU, "--optimizer", "sgd",
                    "--lr", "0.01"],
        "offline": ["-s", "joint"],
    }


# Published numbers: van de Ven & Tolias 2019 Table 4 (class and task), Hsu et al. 2018 (naive
# rehearsal and GEM: task / domain / class), Chaudhry et al. 2019 (A-GEM; Permuted MNIST).
PUBLISHED = {
    "split-class": {"none": 19.90, "ewc": 20.01, "online-ewc": 19.96, "si": 19.99, "lwf": 23.85,
                    "dgr": 90.79, "dgr+distill": 91.79, "icarl": 94.57, "rehearsal-hsu": 90.78,
                    "gem-hsu": 92.20, "offline": 97.9},
    "split-task": {"ewc": 98.64, "dgr": 99.50, "dgr+distill": 99.61, "rehearsal-hsu": 99.40,
                   "gem-hsu": 98.42, "offline": 99.7},
    "split-domain": {"rehearsal-hsu": 95.16, "gem-hsu": 96.16},
    "permuted": {"gem": 89.5, "agem": 89.1},
}


def data_path(folder: str, name: str) -> Path:
    """Where ``folder`` keeps data set ``name``: its ``.npz`` if there is one, else its IDX folder."""
    stem = Path(folder).expanduser() / DATASETS[name]
    npz = stem.with_name(stem.name + ".npz")
    return stem if stem.is_dir() and not npz.exists() else npz


def check_data(folder: str, names: set[str]) -> None:
    """Exit with one line (code 2, as edgelll does for bad input) when a data set is not there."""
    if not folder:
        fail(f"no data folder: pass --data DIR or set {DATA_ENV} to the folder holding mnist.npz "
             "and fashion_mnist.npz (see the README, Getting MNIST and Fashion-MNIST)")
    for name in sorted(names):
        path = data_path(folder, name)
        if not path.exists():
            fail(f"{path} does not exist; {name} goes in {Path(folder).expanduser()} as "
                 f"{DATASETS[name]}.npz or a folder {DATASETS[name]}/ of its four IDX files")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def tables(only: str, folder: str) -> dict[str, list[tuple[str, list[str]]]]:
    mnist = f"mnist={data_path(folder, 'mnist')}"
    fashion = f"fashion-mnist={data_path(folder, 'fashion-mnist')}"
    out = {}
    for scenario in ("class", "task", "domain"):
        names = [m for m in methods(scenario) if KEEP[scenario] is None or m in KEEP[scenario]]
        for prefix, data in (("split", mnist), ("fashion", fashion)):
            out[f"{prefix}-{scenario}"] = [
                (m, ["--data", data, "--scenario", scenario, *SPLIT, *methods(scenario)[m]])
                for m in names]
    out["permuted"] = [
        (m, ["--data", mnist, *PERMUTED, *args]) for m, args in
        (("none", ["-s", "naive"]), ("gem", ["-s", "gem", "--set", "gem.per_experience=256"]),
         ("agem", ["-s", "agem", "--set", "agem.per_experience=256",
                   "--set", "agem.batch_size=256"]))]  # its reference gradient over 256 samples
    order = [f"{p}-{s}" for p in ("split", "fashion") for s in ("class", "task", "domain")]
    out = {t: out[t] for t in [*order[:3], "permuted", *order[3:]]}  # MNIST first
    out = {t: [(m, protocol(cli)) for m, cli in runs] for t, runs in out.items()}
    if only == "all":
        return out
    unknown = [t for t in only.split(",") if t not in out]
    if unknown:
        fail(f"unknown table {unknown[0]!r}; choose from all, {', '.join(out)}")
    return {t: out[t] for t in only.split(",")}


def protocol(cli: list[str]) -> list[str]:
    """``cli`` with each option given once, its last value winning (a method's own schedule or
    optimiser replaces the table's); ``--epochs`` drops the table's ``--steps``."""
    single = {"--optimizer", "--lr", "--steps", "--epochs", "--batch-size"}
    last = {cli[i]: i for i in range(len(cli) - 1) if cli[i] in single}
    if "--epochs" in last:
        last.pop("--steps", None)
    out, i = [], 0
    while i < len(cli):
        if cli[i] in single:
            if last.get(cli[i]) == i:
                out += cli[i:i + 2]
            i += 2
        else:
            out.append(cli[i])
            i += 1
    return out


def run(table: str, method: str, args: list[str], seed: int, edgelll: str,
        threads: int) -> dict | None:
    out = OUT / table / f"{method}-s{seed}"
    metrics = out / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text()).get("complete"):
        return json.loads(metrics.read_text())
    cmd = [edgelll, "learn", *args, "--seed", str(seed), "--quiet", "--device", "cpu"]
    if out.exists():  # an interrupted run continues from its last checkpoint
        cmd = [edgelll, "learn", "--quiet", "--resume", str(out)]
    else:
        cmd += ["--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"  {table}/{method} seed {seed} failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        if proc.returncode == 2 and not (out / "checkpoints").exists():
            shutil.rmtree(out, ignore_errors=True)
        return None
    return json.loads(metrics.read_text())


def report(table: str, rows: dict[str, list[dict]]) -> str:
    lines = [f"### {table}", "", "| method | ACC mean ± std (%) | seeds | published | difference | forgetting |",
             "|---|---|---|---|---|---|"]
    for method, results in rows.items():
        if not results:
            continue
        accs = [100 * r["acc"] for r in results]
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        pub = PUBLISHED.get(table, {}).get(method)  # Fashion-MNIST has no published reference
        diff = f"{mean - pub:+.2f}" if pub is not None else "-"
        forget = statistics.mean(100 * r["forgetting"] for r in results)
        lines.append(f"| {method} | {mean:.2f} ± {std:.2f} | {len(accs)} | "
                     f"{pub if pub is not None else '-'} | {diff} | {forget:.2f} |")
    return "\n".join(lines)


def finished(table: str, method: str, seed: int) -> dict | None:
    done = OUT / table / f"{method}-s{seed}" / "metrics.json"
    if done.is_file():
        result = json.loads(done.read_text())
        return result if result.get("complete") else None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="split-class", help="a table, several (a,b) or all")
    ap.add_argument("--methods", default="", help="comma-separated subset")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once, each on its own threads")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0: cores / jobs)")
    ap.add_argument("--report", action="store_true", help="only print the tables of finished runs")
    ap.add_argument("--data", metavar="DIR", default=os.environ.get(DATA_ENV, ""),
                    help=f"folder holding mnist.npz and fashion_mnist.npz (default: ${DATA_ENV})")
    args = ap.parse_args()
    edgelll = shutil.which("edgelll") or sys.exit("edgelll is not installed (make install)")
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = set(filter(None, args.methods.split(",")))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    todo = {table: [(m, cli) for m, cli in experiments if not wanted or m in wanted]
            for table, experiments in tables(args.table, args.data).items()}
    if not args.report:  # the report reads finished run directories only
        check_data(args.data, {"fashion-mnist" if t.startswith("fashion") else "mnist"
                               for t, experiments in todo.items() if experiments})
        jobs = [(table, m, cli, seed) for table, experiments in todo.items()
                for seed in seeds for m, cli in experiments]
        # MNIST before Fashion-MNIST's first seed before its other seeds, and within each the
        # slow generative runs last.
        jobs.sort(key=lambda j: (j[0].startswith("fashion") and j[3] != seeds[0],
                                 j[0].startswith("fashion"), j[1].startswith("dgr")))
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run, t, m, cli, seed, edgelll, threads): (t, m, seed)
                       for t, m, cli, seed in jobs}
            for future in concurrent.futures.as_completed(futures):
                (t, m, seed), result = futures[future], future.result()
                if result is not None:
                    print(f"  {t}/{m} seed {seed}: ACC {100 * result['acc']:.2f}%", flush=True)
    for table, experiments in todo.items():
        rows = {m: [r for seed in seeds if (r := finished(table, m, seed))] for m, _ in experiments}
        print(report(table, rows) + "\n", flush=True)


if __name__ == "__main__":
    main()

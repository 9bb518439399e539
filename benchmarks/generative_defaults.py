"""The grid behind `generative`'s default VAE: final ACC of the default `edgelll learn` run on the
embedded digits (class scenario, 5 experiences, replay by a VAE) for VAE widths, latent sizes and
VAE updates per step, over seeds. ``--data`` runs the same grid on another data set, as
``edgelll learn --data`` takes it (for example ``mnist=$EDGELLL_DATA/mnist.npz``).

    python benchmarks/generative_defaults.py [--seeds 0,1,2] [--data digits]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

GRID = {"hidden": ["128", "256", "512", "256,128"], "latent": ["4", "8", "16"],
        "vae_steps": ["1", "2"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data", default="digits",
                    help="digits (embedded; the default's grid), mnist=PATH, fashion-mnist=PATH")
    args = ap.parse_args()
    edgelll = shutil.which("edgelll") or sys.exit("edgelll is not installed (make install)")
    path = args.data.partition("=")[2] or args.data
    if args.data != "digits" and not Path(path).expanduser().exists():
        fail(f"{path} does not exist; pass --data mnist=PATH with PATH an .npz file or IDX folder")
    work = Path(tempfile.mkdtemp(prefix="edgelll-gen-"))
    print("| hidden | latent | vae_steps | final ACC per seed | mean |")
    print("|---|---|---|---|---|")
    try:
        for values in itertools.product(*GRID.values()):
            sets = [a for k, v in zip(GRID, values) for a in ("--set", f"generative.{k}={v}")]
            accs = []
            for seed in args.seeds.split(","):
                out = work / f"{'-'.join(values)}-{seed}"
                proc = subprocess.run([edgelll, "learn", "--data", args.data, "-s", "generative",
                                       *sets, "--seed", seed, "--quiet", "--out", str(out)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:  # edgelll's own one-line reason, not a traceback here
                    fail(proc.stderr.strip().splitlines()[-1].removeprefix("error: ")
                         if proc.stderr.strip() else f"edgelll learn exited {proc.returncode}")
                accs.append(json.loads((out / "metrics.json").read_text())["acc"])
            per = " ".join(f"{100 * a:.1f}" for a in accs)
            print(f"| {values[0]} | {values[1]} | {values[2]} | {per} | "
                  f"{100 * statistics.mean(accs):.1f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()

"""The grid behind `generative`'s default VAE: final ACC of the default `edgelll learn` run on the
embedded digits (class scenario, 5 experiences, replay by a VAE) for VAE widths, latent sizes and
VAE updates per step, over seeds.

    python benchmarks/generative_defaults.py [--seeds 0,1,2]
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
    args = ap.parse_args()
    edgelll = shutil.which("edgelll") or sys.exit("edgelll is not installed (make install)")
    work = Path(tempfile.mkdtemp(prefix="edgelll-gen-"))
    print("| hidden | latent | vae_steps | final ACC per seed | mean |")
    print("|---|---|---|---|---|")
    try:
        for values in itertools.product(*GRID.values()):
            sets = [a for k, v in zip(GRID, values) for a in ("--set", f"generative.{k}={v}")]
            accs = []
            for seed in args.seeds.split(","):
                out = work / f"{'-'.join(values)}-{seed}"
                subprocess.run([edgelll, "learn", "-s", "generative", *sets, "--seed", seed,
                                "--quiet", "--out", str(out)], check=True, capture_output=True)
                accs.append(json.loads((out / "metrics.json").read_text())["acc"])
            per = " ".join(f"{100 * a:.1f}" for a in accs)
            print(f"| {values[0]} | {values[1]} | {values[2]} | {per} | "
                  f"{100 * statistics.mean(accs):.1f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""A run killed with SIGKILL at any moment loses no completed experience and resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from edgelll.runs import load_checkpoint

ARGS = ["learn", "--quiet", "--epochs", "25", "--threads", "1", "-s", "replay", "-s", "ewc",
        "--set", "ewc.fisher_samples=128", "--plot", "none"]


def _cli(*args):
    return [sys.executable, "-m", "edgelll.cli.main", *args]


def _kill_when(proc, ready, timeout=60.0):
    start = time.monotonic()
    while not ready():
        if proc.poll() is not None or time.monotonic() - start > timeout:
            pytest.fail("the run ended before the moment chosen to kill it")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_cli(*ARGS, "--out", str(full)), check=True, timeout=300)

    # First kill: during the first experience, before any checkpoint exists.
    proc = subprocess.Popen(_cli(*ARGS, "--out", str(cut)))
    _kill_when(proc, lambda: (cut / "config.json").exists())  # written last when a run begins
    # Second kill: mid-stream, once two experiences are safely on disk.
    proc = subprocess.Popen(_cli("learn", "--quiet", "--resume", str(cut)))
    _kill_when(proc, lambda: (cut / "checkpoints" / "exp001.pt").exists())
    for path in (cut / "checkpoints").glob("exp*.pt"):
        load_checkpoint(path)  # every finished checkpoint is whole
    json.loads((cut / "metrics.json").read_text())

    # --plot inline: the plot is whole before the check for leftover temporary files below
    subprocess.run(_cli("learn", "--quiet", "--plot", "inline", "--resume", str(cut)), check=True,
                   timeout=300)
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert b["complete"] and a["acc_matrix"] == b["acc_matrix"]
    assert a["acc"] == b["acc"] and a["forgetting"] == b["forgetting"]
    last_a = torch.load(full / "checkpoints" / "exp004.pt", weights_only=True)["model"]
    last_b = torch.load(cut / "checkpoints" / "exp004.pt", weights_only=True)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    assert not list(cut.rglob(".*.tmp"))

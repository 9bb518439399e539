"""A trained model is a self-describing artifact: ``edgelll.load_model`` rebuilds it in a fresh
process from the run directory alone, and it reproduces the run's accuracies from the raw test
arrays, with no data set, stream or strategy loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgelll
from edgelll import resolve
from edgelll.errors import CheckpointError
from edgelll.learner import learn

DIGITS = Path(edgelll.__file__).parent / "_data" / "digits.npz"

# Runs in a fresh interpreter: only numpy, torch and the model's own code; the test arrays are
# read straight from the .npz and every sample is given as stored (uint8, (N, 8, 8) here).
SCRIPT = """
import json, sys
import numpy as np
import edgelll
model = edgelll.load_model(sys.argv[1])
arrays = np.load(sys.argv[2])
x, y = arrays["x_test"][:, 0], arrays["y_test"]
routing = model.spec()["labels"]
accs = []
for task, labels in enumerate(routing["tasks"]):
    rows = np.isin(y, labels)
    t = np.full(int(rows.sum()), task) if model.routes_by_task else None
    pred = model.predict(x[rows], t).numpy()
    accs.append(float((pred == y[rows]).mean()))
loaded = sorted(m for m in sys.modules if m.startswith("edgelll.") and
                m.split(".")[1] in ("data", "streams", "strategies", "learner"))
print(json.dumps({"accs": accs, "loaded": loaded}))
"""


@pytest.mark.parametrize("scenario,strategies", [("class", ["replay", "bic"]),
                                                 ("task", ["naive"]), ("class", ["icarl"])])
def test_a_loaded_model_reproduces_the_runs_accuracies(tmp_path, scenario, strategies):
    cfg = resolve({"strategies": strategies, "scenario": scenario, "epochs": 2, "tasks": 3,
                   "class_order": "random", "seed": 2, "model_args": {"hidden": (32,)}})
    result = learn(cfg, run_dir=tmp_path / "run")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run"), str(DIGITS)],
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["accs"] == pytest.approx(result.acc_matrix[-1], abs=1e-12)
    assert got["loaded"] == []  # neither the data set code nor the stream nor the strategies


def test_load_model_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        edgelll.load_model(tmp_path)
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        edgelll.load_model(tmp_path / "x.pt")

"""From a training run to the device runtime: a digits run (1 epoch, a small MLP) exported with
``edgelll export --split`` predicts in ``edgelll.runtime.Model`` what ``edgelll.load_model`` does,
and an export of an early checkpoint (classes 0-5 only: the class head grows as the stream goes)
learns digit 8, a class its head has never had, from 5 training shots, predicted on the held-out
test 8s far above chance, and the state survives save/load bitwise."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgelll  # noqa: E402
from edgelll.data import load_dataset  # noqa: E402
from edgelll.export import ExportOptions, export_run  # noqa: E402
from edgelll.runtime import Model  # noqa: E402

NEW = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    digits = load_dataset("digits")
    cfg = edgelll.resolve({"strategies": ["replay"], "epochs": 1, "model": {"hidden": [32]},
                           "scenario": "class", "seed": 0})
    edgelll.learn(cfg, data=(digits.x_train, digits.y_train, digits.x_test, digits.y_test),
                  run_dir=root / "run", plot="none")
    files = {}
    for name, opts in (("last", ExportOptions(split=True)),
                       ("early", ExportOptions(split=True, checkpoint="exp002",
                                               out=root / "early" / "model-extractor.onnx")),
                       ("early-ncm", ExportOptions(split=True, checkpoint="exp002", head="ncm",
                                                   out=root / "ncm" / "model-extractor.onnx"))):
        entry = export_run(root / "run", opts)
        folder = opts.out.parent if opts.out is not None else root / "run" / "export"
        files[name] = folder / entry["file"]
    return root / "run", files, digits


def test_split_export_predicts_as_the_trained_model(run):
    run_dir, files, digits = run
    model = Model.load(files["last"])
    expect = edgelll.load_model(run_dir).predict(digits.x_test).numpy()
    got = model.predict(digits.x_test)
    assert got.dtype == np.int64 and (got == expect).mean() >= 0.999
    assert sorted(model.classes.tolist()) == list(range(10))


@pytest.mark.parametrize("name", ["early", "early-ncm"])
def test_new_class_from_five_shots_then_save_load_bitwise(run, name, tmp_path):
    _, files, digits = run
    model = Model.load(files[name])
    assert NEW not in model.classes.tolist() and set(model.classes.tolist()) <= set(range(6))
    shots = np.flatnonzero(digits.y_train == NEW)[:5]
    model.learn_class(digits.x_train[shots], NEW, name="eight")
    held_out = digits.x_test[digits.y_test == NEW]
    chance = 1 / len(model.classes)
    assert (model.predict(held_out) == NEW).mean() >= 3 * chance  # far above chance
    assert (model.predict(digits.x_train[shots]) == NEW).all() or name == "early-ncm"
    model.save(tmp_path / "state.npz")
    back = Model.load(files[name], state=tmp_path / "state.npz")
    assert back.scores(digits.x_test).tobytes() == model.scores(digits.x_test).tobytes()
    assert back.names[NEW] == "eight"


APP = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_device_app_runs_without_torch(run, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _, files, _ = run
    app = Path(__file__).resolve().parents[1] / "examples" / "device_app.py"
    proc = subprocess.run([sys.executable, "-c", APP, str(app), str(files["early"]), "--state",
                           str(tmp_path / "state.npz")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "learnt class 6 (digit 6) from 5 shots" in proc.stdout
    assert "scores bitwise identical" in proc.stdout and (tmp_path / "state.npz").is_file()

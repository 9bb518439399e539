"""``edgelll.runtime.Model`` on small ONNX files made here with torch (the runtime itself never
imports it): predictions against the torch module and a numpy head computed apart, learning on the
device, save/load bitwise, the torch- and onnx-free import guard, and every refusal."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelll.errors import DataError
from edgelll.runtime import Model
from edgelll.runtime import format as fmt

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

DIGITS = Path(__file__).resolve().parents[1] / "edgelll" / "_data" / "digits.npz"
UNITS = [3, 0, 2, 1]  # a class map that is not the identity


class Tiny(torch.nn.Module):
    def __init__(self, width: int, classes: int = 0) -> None:
        super().__init__()
        self.body = torch.nn.Linear(64, width)
        self.out = torch.nn.Linear(width, classes) if classes else None

    def forward(self, x):
        f = torch.relu(self.body(x.float().sub(4.0).mul(0.25).flatten(1)))
        return self.out(f) if self.out is not None else f


def make_export(path: Path, graph: str, head: str = "linear", width: int = 16, meta=True):
    torch.manual_seed(0)
    module = Tiny(width, len(UNITS) if graph == "whole" else 0).eval()
    out = "scores" if graph == "whole" else "features"
    torch.onnx.export(module, (torch.zeros(2, 1, 8, 8, dtype=torch.uint8),), str(path),
                      input_names=["x"], output_names=[out], opset_version=17, dynamo=False,
                      dynamic_axes={"x": {0: "batch"}, out: {0: "batch"}})
    info = {"format": fmt.EXPORT_FORMAT, "edgelll_version": "test", "export_format": "onnx",
            "graph": graph, "input": {"shape": [1, 8, 8], "dtype": "uint8", "layout": "nchw"},
            "inputs": ["x"], "routes_by_task": False,
            "labels": {"scenario": "class", "units": UNITS}}
    if graph == "extractor":
        info["head_file"] = path.stem + "-head.npz"
        rng = np.random.default_rng(0)
        arrays = ({"weight": rng.normal(size=(4, width)), "bias": rng.normal(size=4)}
                  if head == "linear" else {"sums": rng.random((4, width)) * 3, "counts": np.full(4, 3.0)})
        fmt.save_head(path.parent / info["head_file"], {"kind": head, "labels": UNITS,
                                                        "tasks": [-1] * 4, **arrays})
    if meta:
        model = onnx.load(str(path))
        prop = model.metadata_props.add()
        prop.key, prop.value = fmt.METADATA_KEY, json.dumps(info)
        onnx.save(model, str(path))
    return module


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    mods = {name: make_export(root / f"{name}.onnx", graph, head, **kw) for name, graph, head, kw in (
        ("linear", "extractor", "linear", {}), ("ncm", "extractor", "ncm", {}),
        ("whole", "whole", "", {}), ("foreign", "whole", "", {"meta": False}),
        ("narrow", "extractor", "linear", {"width": 8}))}
    return root, mods


@pytest.fixture(scope="module")
def digits():
    with np.load(DIGITS) as d:
        return d["x_test"], d["y_test"].astype(np.int64)


def _torch(module, x):
    with torch.no_grad():
        return module(torch.as_tensor(x)).numpy()


def test_split_linear_predicts_as_torch_then_numpy_head(files, digits):
    root, mods = files
    x, _ = digits
    model = Model.load(root / "linear.onnx")
    head = fmt.load_head(root / "linear-head.npz")
    expect = np.asarray(UNITS)[np.argmax(_torch(mods["linear"], x) @ head["weight"].T + head["bias"], 1)]
    assert model.predict(x).dtype == np.int64
    assert (model.predict(x) == expect).mean() >= 0.999
    assert model.classes.tolist() == UNITS and model.scores(x).shape == (len(x), 4)
    assert model.predict(x[5]).tolist() == model.predict(x[5:6]).tolist()  # one sample
    assert model.predict(x[:, 0]).tolist() == model.predict(x).tolist()  # channel axis missing


def test_whole_and_foreign_predict(files, digits):
    root, mods = files
    x, _ = digits
    logits = _torch(mods["whole"], x)
    assert (Model.load(root / "whole.onnx").predict(x) == np.asarray(UNITS)[logits.argmax(1)]).mean() >= 0.999
    foreign = Model.load(root / "foreign.onnx")
    assert (foreign.predict(x) == _torch(mods["foreign"], x).argmax(1)).mean() >= 0.999
    assert foreign.classes.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", ["linear", "ncm"])
def test_learn_class_predicted_at_once_and_survives_save_bitwise(files, digits, tmp_path, kind):
    root, _ = files
    x, y = digits
    onnx_bytes = hashlib.sha256((root / f"{kind}.onnx").read_bytes()).digest()
    model = Model.load(root / f"{kind}.onnx", buffer_bytes=4096, seed=1)
    new = np.flatnonzero(y == 7)
    model.learn_class(x[new[:5]], 7, name="seven")
    assert model.classes.tolist() == [*UNITS, 7] and model.names == {7: "seven"}
    assert (model.predict(x[new[:5]]) == 7).all() if kind == "ncm" else (model.predict(x[new[:5]]) == 7).mean() >= 0.6
    model.learn(x[y < 4][:40], y[y < 4][:40])
    state = tmp_path / "state.npz"
    model.save(state)
    back = Model.load(root / f"{kind}.onnx", state=state)
    assert back.scores(x).tobytes() == model.scores(x).tobytes()
    assert back.names == {7: "seven"} and back.buffer.x.tobytes() == model.buffer.x.tobytes()
    assert back.buffer.seen == 45 and back.buffer.nbytes <= 4096
    back.learn(x[:8][y[:8] < 4], y[:8][y[:8] < 4])  # resumes learning
    assert hashlib.sha256((root / f"{kind}.onnx").read_bytes()).digest() == onnx_bytes


def test_linear_learn_fits_the_batch(files, digits):
    root, _ = files
    x, y = digits
    model = Model.load(root / "linear.onnx", lr=0.5)
    keep = y < 4
    before = (model.predict(x[keep]) == y[keep]).mean()
    for _ in range(60):
        model.learn(x[keep], y[keep])
    assert (model.predict(x[keep]) == y[keep]).mean() > max(before + 0.2, 0.6)


def test_bad_inputs_are_one_line(files, digits, tmp_path):
    root, _ = files
    x, y = digits
    split, whole = Model.load(root / "linear.onnx"), Model.load(root / "whole.onnx")
    foreign = Model.load(root / "foreign.onnx")
    (tmp_path / "cut.onnx").write_bytes((root / "linear.onnx").read_bytes()[:700])
    split.save(tmp_path / "narrow-state.npz")
    cases = [
        (lambda: split.predict(x[:, :, :4]), r"\(N, 1, 8, 8\)"),
        (lambda: split.predict(x.astype(np.float32)), "dtype float32"),
        (lambda: split.learn(x[:5], [9] * 5), "learn_class"),
        (lambda: split.learn_class(x[:5], 3), "already a class"),
        (lambda: whole.learn(x[:5], y[:5]), "export --split"),
        (lambda: foreign.learn_class(x[:5], 9), "no edgelll metadata"),
        (lambda: Model.load(tmp_path / "cut.onnx"), "not a valid ONNX model"),
        (lambda: Model.load(root / "linear.onnx", state=tmp_path / "none.npz"), "does not exist"),
        (lambda: Model.load(root / "narrow.onnx", state=tmp_path / "narrow-state.npz"),
         "16 features but this extractor gives 8"),
        (lambda: split.save(root / "linear-head.npz"), "never rewritten"),
    ]
    for call, message in cases:
        with pytest.raises(DataError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    assert split.classes.tolist() == UNITS  # nothing learnt from the refused calls


GUARD = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import numpy as np
from edgelll.runtime import Model
x = np.load(sys.argv[2])['x_test'][:20]
m = Model.load(sys.argv[1], buffer_bytes=2048)
p = m.predict(x); m.learn(x[:4], m.classes[:1].repeat(4)); m.learn_class(x[4:9], 99)
m.save(sys.argv[3]); b = Model.load(sys.argv[1], state=sys.argv[3])
assert (b.predict(x) == m.predict(x)).all() and 99 in m.predict(x[4:9])
print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'onnx')))
"""


def test_runtime_needs_neither_torch_nor_onnx(files, tmp_path):
    root, _ = files
    run = subprocess.run([sys.executable, "-c", GUARD, str(root / "ncm.onnx"), str(DIGITS),
                          str(tmp_path / "s.npz")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("graph", ["whole", "extractor"])
def test_the_direct_session_call_gives_what_the_public_run_gives(tmp_path, graph):
    """Model calls the C++ session without InferenceSession.run's per-call checks (its own input
    checks stand in for them); the outputs must be bit for bit those of the public run."""
    path = tmp_path / f"{graph}.onnx"
    make_export(path, graph)
    model = Model.load(path)
    x = np.load(DIGITS)["x_test"][:33]
    direct_scores, direct_labels = model.scores(x), model.predict(x)
    one = model.predict(x[0])
    model._session_run = model.session.run  # the public API
    np.testing.assert_array_equal(model.scores(x), direct_scores)
    np.testing.assert_array_equal(model.predict(x), direct_labels)
    np.testing.assert_array_equal(model.predict(x[0]), one)
    assert set(direct_labels.tolist()) <= set(UNITS)

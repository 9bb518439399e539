"""Progressive Neural Networks (-s progressive, models/progressive.py): earlier columns unchanged
bit for bit by later tasks (task-scenario forgetting exactly zero), lateral adapters that carry
the earlier columns' activations, narrower later columns, MLP and convnet columns, rebuild from
the spec, a bit-identical resume, an export that passes parity, and the refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import edgelll
from edgelll.data import load_dataset
from edgelll.errors import BudgetError, ConfigError
from edgelll.export import ExportOptions, export_run
from edgelll.runs import load_checkpoint
from models.registry import rebuild


def _cfg(**kw):
    base = {"strategies": ["progressive"], "scenario": "task", "epochs": 1, "tasks": 5,
            "model_args": {"hidden": (32, 24)}, "device": "cpu"}
    return edgelll.resolve({**base, **kw})


@pytest.fixture(scope="module")
def data():
    d = load_dataset("digits")
    return d.x_train, d.y_train, d.x_test, d.y_test


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("pnn") / "run"
    result = edgelll.learn(_cfg(progressive={"width_ratio": 0.5}, epochs=4), data=data, run_dir=root,
                           plot="none")
    return result, root


def _column_state(state: dict, k: int) -> dict:
    keys = (f"backbone.columns.{k}.", f"backbone.adapters.{k}.", f"head.blocks.{k}.")
    return {n: t for n, t in state.items() if n.startswith(keys)}


def test_earlier_columns_stay_bitwise_and_nothing_is_forgotten(run):
    result, root = run
    final = result.model.state_dict()
    for k in range(4):  # column k as it was when its task ended, against the end of the run
        then = _column_state(load_checkpoint(root / "checkpoints" / f"exp{k:03d}.pt")["model"], k)
        assert then and all(torch.equal(t, final[n]) for n, t in then.items()), k
    R = np.array(result.acc_matrix)
    for j in range(5):  # every task's accuracy after its own training, unchanged ever after
        assert (R[j:, j] == R[j, j]).all()
    assert result.metrics["forgetting"] == 0.0 and result.metrics["acc"] > 0.9


def test_the_memory_plan_counts_every_column(data, tmp_path):
    # the plan is made before training, for the network the last task will have; frozen
    # columns keep no gradient, so the measured peak is exactly the plan
    edgelll.learn(_cfg(memory="40MiB"), data=data, run_dir=tmp_path / "run", plot="none")
    memory = json.loads((tmp_path / "run" / "metrics.json").read_text())["memory_bytes"]
    assert memory["total"] == memory["planned"]["total"]
    with pytest.raises(BudgetError, match="too small"):
        edgelll.learn(_cfg(memory="64KiB"), data=data, plot="none")


def test_lateral_adapters_carry_the_earlier_columns(run, data):
    result, _ = run
    model = result.model
    prog = model.progressive
    assert len(prog.columns) == 5 and prog.widths == [24, 12, 12, 12, 12]  # width_ratio 0.5
    assert [s.main.out_features for s in prog.columns[1].stages] == [16, 12]
    assert prog.column_params()[1] < prog.column_params()[0]
    # the newest column learns, with its adapters; everything earlier is frozen
    assert all(p.requires_grad for p in prog.columns[4].parameters())
    assert all(p.requires_grad for p in prog.adapters[4].parameters())
    assert not any(p.requires_grad for p in prog.columns[0].parameters())
    x = torch.as_tensor(data[2][:64])
    with torch.no_grad():
        before = model.forward_features(x)
        prog.columns[0].stages[0].main.weight.mul_(2)  # column 0's hidden activations change
        after = model.forward_features(x)
        prog.columns[0].stages[0].main.weight.div_(2)
    w = prog.widths
    assert not torch.equal(before[:, w[0]:w[0] + w[1]], after[:, w[0]:w[0] + w[1]])  # column 1


def test_the_spec_rebuilds_the_network_and_the_export_passes_parity(run, data, tmp_path):
    result, root = run
    model = result.model
    again = rebuild(model.spec())
    again.load_state_dict(model.state_dict())
    x, t = torch.as_tensor(data[2][:50]), torch.arange(50) % 5
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x, t), model(x, t))
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    entry = export_run(copy, ExportOptions())
    parity = entry["parity"]
    assert parity["max_abs_diff"] <= parity["tolerance"] and parity["label_agreement"] == 1.0
    import onnx
    graph = onnx.load(str(copy / "export" / entry["file"])).graph
    assert [i.name for i in graph.input] == ["x", "task"]  # the column is picked by task id
    # split: the columns as the extractor, the head blocks routed by task id on the device
    from edgelll.runtime import Model
    split = export_run(copy, ExportOptions(split=True))
    device = Model.load(copy / "export" / split["file"])
    x, t = data[2], (data[3] // 2).astype(np.int64)  # digits 2t, 2t+1 are task t
    np.testing.assert_array_equal(device.predict(x, t), model.predict(x, t).numpy())


def test_a_resumed_run_is_bit_identical(data, tmp_path):
    full = edgelll.learn(_cfg(tasks=3), data=data, run_dir=tmp_path / "a", plot="none")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "checkpoints" / "exp002.pt").unlink()
    (tmp_path / "b" / "metrics.json").unlink()
    again = edgelll.learn(_cfg(tasks=3), data=data, run_dir=tmp_path / "b", resume=True,
                          plot="none")
    assert again.acc_matrix == full.acc_matrix
    a, b = full.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_convnet_columns(data):
    result = edgelll.learn(_cfg(model="convnet", model_args={"channels": (4, 8), "hidden": 16},
                                tasks=3), data=data, plot="none")
    prog = result.model.progressive
    assert len(prog.columns) == 3 and result.metrics["forgetting"] == 0.0
    conv = prog.adapters[1][0]  # the second conv stage's lateral: 1x1 then the layer's kernel
    assert isinstance(conv.v, torch.nn.Conv2d) and conv.v.kernel_size == (1, 1)
    assert conv.u.kernel_size == prog.columns[1].stages[1].main.kernel_size


@pytest.mark.parametrize("settings, match", [
    ({"scenario": "class"}, "task id"),
    ({"scenario": "domain"}, "task id"),
    ({"strategies": ["progressive", "independent"]}, "drop one"),
    ({"progressive": {"width_ratio": 0}}, "width_ratio"),
    ({"progressive": {"width_ratio": 1.5}}, "width_ratio"),
])
def test_bad_settings_are_refused(settings, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**settings)


def test_other_models_are_refused(data):
    with pytest.raises(ConfigError, match="mlp or convnet"):
        edgelll.learn(_cfg(model="mlp-small", model_args={}), data=data, plot="none")

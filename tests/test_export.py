"""``edgelll export``: every model shape the learner makes exports and matches torch, checked
here with bare ONNX Runtime sessions and our own numpy, never with the exporter's own checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

import edgelll
from edgelll import resolve
from edgelll.cli.main import app
from edgelll.data import load_dataset
from edgelll.export import ExportOptions, export_run
from edgelll.learner import learn
from edgelll.runtime.format import load_head, parse_metadata, units_to_labels
from edgelll.streams import make_stream

TINY = {"model_args": {"hidden": (16,)}, "tasks": 3, "epochs": 1}
SHAPES = {
    "naive": {"strategies": ["naive"]},
    "task": {"strategies": ["naive"], "scenario": "task"},
    "bic": {"strategies": ["replay", "bic"], "bic": {"epochs": 5}},
    "icarl": {"strategies": ["icarl"]},
    "distill": {"strategies": ["naive", "distill"], "distill": {"teacher_hidden": (32,)}},
    "latent": {"strategies": ["latent"], "model_args": {"hidden": (16, 16), "pool": 2},
               "latent": {"layer": 1}},
    "ncm": {"strategies": ["ncm"]},
    "independent": {"strategies": ["independent"]},
    "independent-task": {"strategies": ["independent"], "scenario": "task"},
    "domain": {"strategies": ["naive"], "scenario": "domain", "stream": "permuted", "tasks": 2},
    "convnet": {"strategies": ["naive"], "model": "convnet",
                "model_args": {"hidden": 16, "channels": (4, 8)}},
    # the run the int8, overwrite and bad-input tests use
    "replay": {"strategies": ["replay"], "model_args": {"hidden": (64,)}, "epochs": 3},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and the host is shared
    try:
        for name, cfg in SHAPES.items():
            learn(resolve({**TINY, **cfg}), run_dir=root / name, plot="none")
    finally:
        torch.set_num_threads(threads)
    return {name: root / name for name in SHAPES}


def invoke(*args):
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, [str(a) for a in args])


def sessions(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def stream_sets(run: Path):
    """The run's stream rebuilt from its config, with each test sample's task id."""
    cfg = edgelll.LearnConfig.from_dict(json.loads((run / "config.json").read_text()))
    stream = make_stream(load_dataset(cfg.data), cfg.stream, cfg.scenario, cfg.tasks,
                         cfg.class_order, cfg.seed)
    return [(e.x_test.numpy(), e.y_test.numpy(), np.full(len(e.y_test), e.task_id))
            for e in stream.experiences]


def feed(sess, x, t):
    names = [i.name for i in sess.get_inputs()]
    return {"x": x, **({"task": t.astype(np.int64)} if "task" in names else {})}


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "replay"])
def test_every_shape_exports_and_matches_torch(runs, tmp_path, shape):
    model = edgelll.load_model(runs[shape])
    out = tmp_path / "model.onnx"
    export_run(runs[shape], ExportOptions(out=out, latency_runs=3))
    onnx.checker.check_model(onnx.load(str(out)))
    sess = sessions(out)
    assert [i.name for i in sess.get_inputs()] == (["x", "task"] if model.routes_by_task else ["x"])
    for x, _, t in stream_sets(runs[shape]):
        got = sess.run(None, feed(sess, x, t))[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x), torch.from_numpy(t)).numpy()
        finite = np.isfinite(ref)
        assert np.array_equal(np.isfinite(got), finite)
        assert np.abs(got[finite] - ref[finite]).max() <= 1e-4
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.999


def split_scores(head: dict, feats: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Our own numpy of the head file: linear rows, or negative distances to the class means."""
    if head["kind"] == "linear":
        s = feats @ head["weight"].T + head["bias"]
    else:
        means = head["sums"] / np.maximum(head["counts"], 1)[:, None]
        if head["cosine"]:
            feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
            means = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        s = -np.linalg.norm(feats[:, None, :] - means[None], axis=2)
        s[:, head["counts"] == 0] = -np.inf
    mine = (head["tasks"][None] < 0) | (head["tasks"][None] == t[:, None])
    return np.where(mine, s, -np.inf)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "replay"])
def test_split_features_through_the_head_reproduce_the_whole_model(runs, tmp_path, shape):
    model = edgelll.load_model(runs[shape])
    out = tmp_path / "x.onnx"
    entry = export_run(runs[shape], ExportOptions(out=out, split=True, latency_runs=3))
    head = load_head(tmp_path / entry["head_file"])
    meta = parse_metadata(sessions(out).get_modelmeta().custom_metadata_map)
    assert meta["graph"] == "extractor" and meta["head_file"] == "x-head.npz"
    sess = sessions(out)
    assert [o.name for o in sess.get_outputs()] == ["features"]
    for x, _, t in stream_sets(runs[shape]):
        scores = split_scores(head, sess.run(None, {"x": x})[0], t)
        pred = head["labels"][scores.argmax(1)]
        want = model.predict(x, t if model.routes_by_task else None).numpy()
        assert (pred == want).mean() >= 0.999, shape
        if not model.routes_by_task:  # rows are the model's units: the scores themselves agree
            with torch.no_grad():
                ref = model(torch.from_numpy(x), torch.from_numpy(t)).numpy()
            finite = np.isfinite(ref)
            assert np.abs(scores[finite] - ref[finite]).max() <= 1e-4


def test_bic_correction_is_folded_into_the_rows(runs, tmp_path):
    model = edgelll.load_model(runs["bic"])
    bias = model.head
    assert bias.kind == "bias" and float(bias.alpha) != 1.0  # a correction worth folding
    export_run(runs["bic"], ExportOptions(out=tmp_path / "m.onnx", split=True, latency_runs=3))
    head = load_head(tmp_path / "m-head.npz")
    w = model.head.inner.linear.weight.detach().numpy()
    k = bias.new_from
    np.testing.assert_allclose(head["weight"][:k], w[:k], rtol=0, atol=0)
    np.testing.assert_allclose(head["weight"][k:], w[k:] * float(bias.alpha), rtol=1e-6)


def test_metadata_round_trip(runs):
    run = runs["task"]
    export_run(run, ExportOptions(latency_runs=3))
    path = run / "export" / "model.onnx"
    sess = sessions(path)
    meta = parse_metadata(sess.get_modelmeta().custom_metadata_map, path)
    model = edgelll.load_model(run)
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    assert meta["config_digest"] == hashlib.sha256(canonical).hexdigest()
    assert meta["source"] == {"run": run.name, "checkpoint": "exp002"}
    assert meta["strategies"] == config["strategies"]
    assert meta["export_format"] == "onnx" and meta["graph"] == "whole"
    assert meta["inputs"] == [i.name for i in sess.get_inputs()] == ["x", "task"]
    assert meta["routes_by_task"] is True
    assert meta["input"]["shape"] == list(sess.get_inputs()[0].shape[1:]) == [1, 8, 8]
    assert meta["input"]["dtype"] == "uint8" and sess.get_inputs()[0].type == "tensor(uint8)"
    assert meta["labels"] == model.spec()["labels"] and meta["spec"] == model.spec()
    assert meta["metrics"]["acc_matrix"] == metrics["acc_matrix"]
    assert meta["metrics"]["acc"] == pytest.approx(metrics["acc"], abs=1e-12)
    assert meta["memory"]["measured"] == metrics["memory_bytes"]["total"]
    x = stream_sets(run)[1][0]
    for n in (1, 7):  # the batch axis is dynamic
        assert sess.run(None, feed(sess, x[:n], np.full(n, 1)))[0].shape == (n, 4)
    report = json.loads((run / "export" / "report.json").read_text())["exports"]["model.onnx"]
    assert report["bytes"] == path.stat().st_size and report["opset"] == 17


@pytest.mark.parametrize("fmt", ["onnx-int8", "onnx-int8-dynamic"])
def test_int8_metrics_equal_an_independent_evaluation_of_the_file(runs, tmp_path, fmt):
    run = runs["replay"]
    out = tmp_path / f"{fmt}.onnx"
    entry = export_run(run, ExportOptions(format=fmt, out=out, max_acc_drop=100, latency_runs=6))
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert ("QuantizeLinear" in ops) if fmt == "onnx-int8" else ("MatMulInteger" in ops or
                                                                  "DynamicQuantizeLinear" in ops)
    sess = sessions(out)
    meta = parse_metadata(sess.get_modelmeta().custom_metadata_map)
    labels = meta["labels"]
    row = []
    for x, y, t in stream_sets(run):
        s = sess.run(None, feed(sess, x, t))[0]
        pred = units_to_labels(labels, s.argmax(1))
        row.append(float((pred == units_to_labels(labels, y)).mean()))
    assert meta["metrics"]["acc_matrix"][-1] == pytest.approx(row, abs=1e-12)
    assert entry["metrics"] == meta["metrics"]
    assert meta["metrics"]["acc"] == pytest.approx(np.mean(row), abs=1e-12)
    fp32 = json.loads((run / "metrics.json").read_text())
    np.testing.assert_allclose(entry["fp32_metrics"]["acc_matrix"], fp32["acc_matrix"], atol=1e-12)
    assert entry["acc_drop_points"] == pytest.approx(100 * (fp32["acc"] - np.mean(row)), abs=1e-9)
    assert entry["size_ratio"] < 0.6  # 64-wide layers: int8 weights dominate the file
    t = entry["timing"]
    assert t["fp32_median_us"] > 0 and t["int8_median_us"] > 0
    assert ("note" in t) == (t["int8_median_us"] > t["fp32_median_us"])
    if fmt == "onnx-int8":
        assert entry["quantization"]["calibration"] == "replay buffer"


def test_calibration_without_a_buffer_uses_training_data(runs, tmp_path):
    entry = export_run(runs["naive"], ExportOptions(format="onnx-int8", out=tmp_path / "q.onnx",
                                                    max_acc_drop=100, latency_runs=3))
    assert entry["quantization"]["calibration"] == "training slice"
    assert entry["quantization"]["samples"] == 256


def test_ncm_head_fitted_on_the_exemplars(runs, tmp_path):
    run = runs["replay"]
    out = tmp_path / "e.onnx"
    entry = export_run(run, ExportOptions(out=out, split=True, head="ncm", latency_runs=3))
    head = load_head(tmp_path / "e-head.npz")
    assert head["kind"] == "ncm" and entry["head_fitted_on"]["source"] == "replay buffer"
    sess, row = sessions(out), []
    for x, y, t in stream_sets(run):
        pred = head["labels"][split_scores(head, sess.run(None, {"x": x})[0], t).argmax(1)]
        row.append(float((pred == y).mean()))  # class scenario: units are the labels here
    assert entry["metrics"]["acc_matrix"][-1] == pytest.approx(row, abs=1e-12)
    trained = json.loads((run / "metrics.json").read_text())["acc_matrix"]
    np.testing.assert_allclose(entry["trained_head_metrics"]["acc_matrix"], trained, atol=1e-12)


# -- bad input: one line, exit 2, nothing overwritten ---------------------------------------------

def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output and result.stdout.strip() == ""
    for n in needles:
        assert n in lines[0], lines[0]


def test_a_run_without_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    one_line_error(invoke("export", tmp_path), "no checkpoint")
    assert not (tmp_path / "export").exists()


def test_bad_format_checkpoint_and_options(runs):
    one_line_error(invoke("export", runs["naive"], "--format", "onnx-int4"), "onnx-int8")
    one_line_error(invoke("export", runs["naive"], "--checkpoint", "exp099"), "exp000, exp001")
    one_line_error(invoke("export", runs["naive"], "--head", "ncm"), "--split")
    one_line_error(invoke("export", runs["naive"], "--opset", "9"), "opset")


def test_overwrite_rules(runs, tmp_path):
    out = tmp_path / "m.onnx"
    assert invoke("export", runs["naive"], "--out", out, "--checkpoint", "exp001").exit_code == 0
    assert invoke("export", runs["naive"], "--out", out).exit_code == 0  # a later one replaces
    before = out.read_bytes()
    one_line_error(invoke("export", runs["naive"], "--out", out, "--checkpoint", "exp001"),
                   "later checkpoint", "--force")
    one_line_error(invoke("export", runs["task"], "--out", out), "another run", "--force")
    assert out.read_bytes() == before
    r = invoke("export", runs["naive"], "--out", out)  # the same checkpoint again: replaced
    assert r.exit_code == 0 and "parity with torch" in r.stdout
    assert invoke("export", runs["task"], "--out", out, "--force").exit_code == 0
    meta = parse_metadata(sessions(out).get_modelmeta().custom_metadata_map)
    assert meta["source"]["run"] == "task"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "report.json"]  # no temporaries


def test_int8_losing_more_than_allowed_writes_nothing(runs):
    run, folder = runs["replay"], runs["replay"] / "export"
    assert invoke("export", run).exit_code == 0
    assert invoke("export", run, "-f", "onnx-int8", "--max-acc-drop", "100").exit_code == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    one_line_error(invoke("export", run, "-f", "onnx-int8", "--max-acc-drop", "-100"),
                   "fp32", "a drop over --max-acc-drop -100")
    one_line_error(invoke("export", run, "-f", "onnx-int8-dynamic", "--max-acc-drop", "-100"),
                   "a drop over --max-acc-drop -100")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_the_benchmark_names_its_data_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "EDGELLL_DATA"}
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "export_int8.py"
    for extra, needle in (([], "EDGELLL_DATA"), (["--data", str(tmp_path / "no.npz")], "no.npz")):
        p = subprocess.run([sys.executable, str(script), *extra], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and needle in p.stderr


def test_a_parity_failure_writes_nothing(runs, tmp_path, monkeypatch):
    import edgelll.export_job as job

    monkeypatch.setattr(job, "PARITY_TOL", -1.0)  # no graph can pass: the check must refuse it
    one_line_error(invoke("export", runs["naive"], "--out", tmp_path / "m.onnx"),
                   "does not match torch", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_or_torn_output_is_not_replaced_without_force(runs, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"\x08\x07torn")
    one_line_error(invoke("export", runs["naive"], "--out", out), "not an edgelll export")
    assert out.read_bytes() == b"\x08\x07torn"
    assert invoke("export", runs["naive"], "--out", out, "--force").exit_code == 0


def test_ncm_head_on_a_task_routed_model(runs, tmp_path):
    out = tmp_path / "t.onnx"
    entry = export_run(runs["task"], ExportOptions(out=out, split=True, head="ncm", latency_runs=3))
    head = load_head(tmp_path / "t-head.npz")
    assert list(head["tasks"]) == [0] * 4 + [1] * 3 + [2] * 3  # one row per (task, class)
    sess, row = sessions(out), []
    tasks = edgelll.load_model(runs["task"]).spec()["labels"]["tasks"]
    for x, y, t in stream_sets(runs["task"]):
        pred = head["labels"][split_scores(head, sess.run(None, {"x": x})[0], t).argmax(1)]
        want = np.asarray(tasks[t[0]])[y]  # labels within the task -> data-set labels
        row.append(float((pred == want).mean()))
    assert entry["metrics"]["acc_matrix"][-1] == pytest.approx(row, abs=1e-12)


def test_split_int8_metrics_equal_our_evaluation_through_the_head(runs, tmp_path):
    run = runs["replay"]
    out = tmp_path / "s.onnx"
    entry = export_run(run, ExportOptions(format="onnx-int8", split=True, out=out,
                                          calibration="holdout", max_acc_drop=100,
                                          latency_runs=3))
    assert entry["quantization"]["calibration"] == "training slice"
    head = load_head(tmp_path / "s-head.npz")
    sess, row = sessions(out), []
    for x, y, t in stream_sets(run):
        pred = head["labels"][split_scores(head, sess.run(None, {"x": x})[0], t).argmax(1)]
        row.append(float((pred == y).mean()))
    assert entry["metrics"]["acc_matrix"][-1] == pytest.approx(row, abs=1e-12)


def test_a_graph_the_exporter_cannot_trace_is_one_line(runs, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::foo' to ONNX opset 17 is not supported\n"
                           "more detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    one_line_error(invoke("export", runs["naive"], "--out", tmp_path / "m.onnx"),
                   "cannot be exported", "aten::foo")
    assert list(tmp_path.iterdir()) == []

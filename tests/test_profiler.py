"""``edgelll profile``: percentiles and the Pareto front against hand-made values, the output
files' agreement, every bad input as one line with nothing overwritten, device profiles applied,
and a torch-free profile of ONNX files in a process that cannot import torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgelll.cli.main import app
from edgelll.pareto import pareto_front
from edgelll.profiler import ProfileOptions, profile_targets
from edgelll.profiler_timing import percentile, summarise

RUNS = "20"


def test_percentiles_interpolate_linearly_between_order_statistics():
    # rank q/100*(n-1): [1,2,3,4] p50 at 1.5 -> 2.5, p90 at 2.7 -> 3.7, p99 at 2.97 -> 3.97
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([4, 1, 3, 2], 90) == pytest.approx(3.7)
    assert percentile([4, 1, 3, 2], 99) == pytest.approx(3.97)
    assert percentile([7], 99) == 7 and percentile([5, 1, 3], 50) == 3
    assert percentile([10, 20], 0) == 10 and percentile([10, 20], 100) == 20
    rng = np.random.default_rng(0)
    v = rng.exponential(size=101)
    for q in (50, 90, 99):  # the same definition as numpy's default
        assert percentile(v, q) == pytest.approx(float(np.percentile(v, q)), rel=1e-12)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_in_milliseconds_and_samples_per_second():
    s = summarise([1_000_000, 2_000_000, 3_000_000, 4_000_000], batch=8)
    assert (s["p50_ms"], s["p90_ms"], s["calls"]) == (pytest.approx(2.5), pytest.approx(3.7), 4)
    assert s["throughput"] == pytest.approx(8 * 4 / 0.010)  # 32 samples in 10 ms


def test_pareto_front_of_a_hand_made_set():
    points = [(1, 5), (2, 3), (3, 3), (2, 3), (4, 1), (5, 5), (1, 6), (4, 1)]
    # (3,3) loses to (2,3); (5,5) to all but (1,6); (1,6) to (1,5) at the same latency;
    # the duplicates (2,3) and (4,1) dominate neither each other, so both copies stay.
    assert pareto_front(points) == [True, True, False, True, True, False, False, True]
    assert pareto_front([(1.0, 1.0)]) == [True] and pareto_front([]) == []


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prof")
    r = CliRunner().invoke(app, ["learn", "--epochs", "1", "--set", "model.hidden=32", "--tasks",
                                 "2", "-q", "--plot", "none", "--out", str(root / "run")])
    assert r.exit_code == 0, r.stderr
    report = profile_targets([root / "run"], ProfileOptions(runs=20))  # exports on the fly
    return root, report


def test_a_run_is_profiled_through_exports_made_on_the_fly(run):
    root, report = run
    e = report["targets"][0]
    assert (root / "run" / "export" / "model.onnx").is_file()
    assert (root / "run" / "export" / "model-extractor.onnx").is_file()
    assert e["label"] == "replay fp32" and e["front"] is True
    assert set(e["latency"]) == {"ort-cpu", "torch-cpu"}
    for per_batch in e["latency"].values():
        assert sorted(per_batch) == [1, 8, 32]
        for b, s in per_batch.items():
            assert s["calls"] == 20 and 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
            assert s["throughput"] > 0
    assert e["model_bytes"] == (root / "run" / "export" / "model.onnx").stat().st_size
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    assert e["metrics"]["acc"] == pytest.approx(metrics["acc"], abs=0.01)  # the export's parity
    mem = e["memory"]
    assert mem["torch_loaded"] is False and mem["peak_rss_bytes"] >= mem["baseline_rss_bytes"] > 0
    assert mem["peak_rss_bytes"] < 1 << 30
    learn = e["learning"]
    assert learn["learn_us_per_sample"] > 0 and learn["learn_class_us_per_sample"] > 0
    assert learn["learn_batch"] == 32 and learn["learn_class_shots"] == 5


def _cli(*args):
    return CliRunner().invoke(app, ["profile", "--runs", RUNS, *map(str, args)])


def test_output_files_agree_and_the_plot_is_drawn(run, tmp_path):
    root, _ = run
    onnx = root / "run" / "export" / "model.onnx"
    r = _cli(onnx, root / "run" / "export" / "model-extractor.onnx", "--out", tmp_path / "p",
             "--batch", "1,4")
    assert r.exit_code == 0, r.stderr
    report = json.loads((tmp_path / "p" / "profile.json").read_text())
    rows = list(csv.DictReader((tmp_path / "p" / "profile.csv").open()))
    assert len(rows) == sum(len(e["latency"]) * 2 for e in report["targets"])
    for row in rows:
        e = next(t for t in report["targets"] if t["path"] == row["path"])
        s = e["latency"][row["backend"]][row["batch"]]
        assert float(row["p50_ms"]) == s["p50_ms"] and float(row["p99_ms"]) == s["p99_ms"]
        assert float(row["forgetting"]) == e["metrics"]["forgetting"]
        assert row["front"] == str(e["front"])
    assert (tmp_path / "p" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "replay fp32 split" in r.stdout and "forgetting" in r.stdout
    before = (tmp_path / "p" / "profile.json").read_bytes()
    other = _cli(onnx, "--out", tmp_path / "p")  # another profile's folder: refused, untouched
    assert other.exit_code == 2 and "holds the profile of other targets" in other.stderr
    assert (tmp_path / "p" / "profile.json").read_bytes() == before


def _user_profile(tmp_path, **changes) -> Path:
    raw = {"name": "board", "description": "d", "cpu": "c", "arch": "x86_64", "cores": 1,
           "threads": 1, "ram": "1GiB", "learner_memory": "1MiB", "latency_target_ms": 1e-6,
           "accelerator": "none", "onnx_providers": ["CPUExecutionProvider"], **changes}
    path = tmp_path / f"{raw['name']}.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in raw.items()))
    return path


def test_a_device_profile_sets_threads_and_checks_the_latency_target(run, tmp_path):
    root, _ = run
    onnx = root / "run" / "export" / "model.onnx"
    r = _cli(onnx, "--device-profile", _user_profile(tmp_path), "--out", tmp_path / "p")
    assert r.exit_code == 0, r.stderr
    report = json.loads((tmp_path / "p" / "profile.json").read_text())
    assert report["threads"] == 1 and report["device_profile"]["name"] == "board"
    assert report["targets"][0]["meets_target"] is False  # no model runs in a femtosecond
    assert "board latency target 1e-06 ms at batch 1: 0/1 targets pass" in r.stdout


def _one_line_exit_2(r, words):
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and words in r.stderr, r.stderr


def test_bad_inputs_are_one_line_and_write_nothing(run, tmp_path):
    root, _ = run
    onnx = root / "run" / "export" / "model.onnx"
    bare = tmp_path / "bare"
    (bare / "checkpoints").mkdir(parents=True)
    (bare / "config.json").write_text("{}")
    _one_line_exit_2(_cli(bare, "--out", tmp_path / "o"), "holds no checkpoint")
    _one_line_exit_2(_cli(tmp_path, "--out", tmp_path / "o"), "not an edgelll run directory")
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    _one_line_exit_2(_cli(text, "--out", tmp_path / "o"), "is not a valid ONNX model")
    torn = tmp_path / "torn.onnx"
    torn.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    _one_line_exit_2(_cli(torn, "--out", tmp_path / "o"), "is not a valid ONNX model")
    _one_line_exit_2(_cli(tmp_path / "missing.onnx"), "does not exist")
    _one_line_exit_2(_cli(onnx, "--device-profile", "pi-5"), "unknown device profile 'pi-5'")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ncores = "four"\n')
    _one_line_exit_2(_cli(onnx, "--device-profile", bad), "device profile")
    _one_line_exit_2(_cli(onnx, "--device-profile", "stm32h7"),
                     "only sets budgets: ONNX Runtime does not run on it")
    cuda = _user_profile(tmp_path, name="gpu", onnx_providers=["NoSuchExecutionProvider"])
    _one_line_exit_2(_cli(onnx, "--device-profile", cuda),
                     "NoSuchExecutionProvider is not available in this onnxruntime build")
    _one_line_exit_2(_cli(onnx, "--runs", "2"), "--runs must be at least 3")
    _one_line_exit_2(_cli(onnx, "--batch", "8,x"), "--batch takes sizes")
    assert not (tmp_path / "o").exists()


def _foreign(onnx: Path, out: Path) -> Path:
    import onnx as onnx_pkg

    model = onnx_pkg.load(str(onnx))
    del model.metadata_props[:]
    onnx_pkg.save(model, str(out))
    return out


BLOCKED = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["edgelll", *{argv!r}]
from edgelll.cli.main import main
try:
    main()
finally:
    print("LOADED", sorted(m for m in ("torch", "matplotlib") if m in sys.modules), file=sys.stderr)
"""


def _without(blocked, argv):
    code = BLOCKED.format(blocked=set(blocked), argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_without_torch_it_profiles_onnx_files_and_names_what_it_could_not_fill(run, tmp_path):
    root, _ = run
    onnx = root / "run" / "export" / "model.onnx"
    foreign = _foreign(onnx, tmp_path / "foreign.onnx")
    p = _without({"torch", "matplotlib"}, ["profile", onnx, foreign, "--runs", RUNS, "--out",
                                           tmp_path / "p"])
    assert p.returncode == 0, p.stderr
    assert "LOADED []" in p.stderr
    assert "torch eager not measured: torch is not installed" in p.stdout
    assert "foreign.onnx has no edgelll metadata" in p.stdout
    assert "matplotlib is not installed" in p.stdout
    report = json.loads((tmp_path / "p" / "profile.json").read_text())
    mine, theirs = report["targets"]
    assert set(mine["latency"]) == {"ort-cpu"} and mine["learning"] is not None  # split beside it
    assert theirs["metrics"] is None and theirs["learning"] is None and theirs["front"] is None
    assert report["torch_available"] is False and not (tmp_path / "p" / "pareto.png").exists()
    fresh = tmp_path / "fresh"  # a run directory with no export cannot be exported without torch
    (fresh / "checkpoints").mkdir(parents=True)
    (fresh / "config.json").write_text("{}")
    (fresh / "checkpoints" / "exp000.pt").write_bytes(b"x")
    p = _without({"torch"}, ["profile", fresh, "--runs", RUNS])
    assert p.returncode == 2 and "exporting needs torch" in p.stderr


def test_interleaved_rounds_share_the_calls_and_alternate_targets():
    from edgelll.profiler_timing import Bench, Budget, interleaved

    order = []
    benches = [Bench(("a",), lambda: order.append("a")), Bench(("b",), lambda: order.append("b"))]
    times = interleaved(benches, Budget(runs=7), rounds=5)
    assert [len(times[("a",)]), len(times[("b",)])] == [7, 7]  # 2+2+1+1+1 timed calls each
    warm = Budget(runs=7).warmup
    assert order.count("a") == 7 + warm + 4 * 3  # the first round's warm-up, 3 re-warms after
    first_b = order.index("b")
    assert set(order[:first_b]) == {"a"} and "a" in order[first_b:]  # a, b, a, b, ...


def test_by_duration_and_a_label_from_the_metadata(run, tmp_path):
    root, _ = run
    onnx = root / "run" / "export" / "model-extractor.onnx"
    report = profile_targets([onnx], ProfileOptions(runs=None, seconds=0.02, batches=(1,),
                                                    torch=False))
    (e,) = report["targets"]
    s = e["latency"]["ort-cpu"][1]
    assert s["calls"] >= 1 and s["calls"] * s["p50_ms"] < 0.02 * 1e3 * 3  # ~ a 20 ms window
    assert e["label"] == "replay fp32 split" and "torch eager" not in " ".join(e["notes"])
    assert report["budget"] == {"runs": None, "seconds": 0.02, "batches": [1]}


def test_a_file_away_from_its_run_is_labelled_from_its_own_metadata(run, tmp_path):
    import shutil

    root, _ = run
    for name in ("model-extractor.onnx", "model-extractor-head.npz"):
        shutil.copy(root / "run" / "export" / name, tmp_path / name)  # e.g. copied to a device
    report = profile_targets([tmp_path / "model-extractor.onnx"],
                             ProfileOptions(runs=5, batches=(1,), torch=False))
    assert report["targets"][0]["label"] == "replay fp32 split"


def test_an_export_older_than_the_run_is_profiled_with_a_note(run, tmp_path):
    import shutil

    root, _ = run
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy)
    last = max(copy.glob("checkpoints/exp*.pt"))
    shutil.copy(last, copy / "checkpoints" / "exp009.pt")  # as if resumed after the export
    report = profile_targets([copy], ProfileOptions(runs=5, batches=(1,), torch=False))
    notes = " ".join(report["targets"][0]["notes"])
    assert f"is an export of {last.stem}, not of the run's last checkpoint exp009" in notes


def test_a_task_routed_run_gets_its_learning_cost_too(tmp_path):
    r = CliRunner().invoke(app, ["learn", "--scenario", "task", "--epochs", "1", "--set",
                                 "model.hidden=16", "--tasks", "2", "-q", "--plot", "none",
                                 "--out", str(tmp_path / "task")])
    assert r.exit_code == 0, r.stderr
    report = profile_targets([tmp_path / "task"], ProfileOptions(runs=5, batches=(1,), torch=False))
    (e,) = report["targets"]
    learning = e["learning"]
    assert learning["learn_us_per_sample"] > 0 and learning["learn_class_us_per_sample"] > 0
    assert not any("task-routed" in n for n in e["notes"])

"""What an adversarial tester hit, family by family: settings refused where they are parsed,
impossible models refused before allocation, data that would be scored wrong or read forever, and
a command line whose stderr is one line whatever escapes."""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from edgelll import guards
from edgelll.cli.main import app
from edgelll.config import MAX_COUNT, resolve
from edgelll.data import from_arrays, load_dataset, load_idx_dir
from edgelll.errors import BudgetError, ConfigError, DataError
from edgelll.learner import learn
from edgelll.strategies import STRATEGIES
from edgelll.streams import make_stream

TINY = {"strategies": ["naive"], "tasks": 2, "steps": 2, "batch_size": 16,
        "model_args": {"hidden": (8,)}}


def _cli(*args):
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    return runner.invoke(app, [str(a) for a in args])


def _one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


# -- settings refused before training --------------------------------------------------------------

def _params(kind):
    for name, cls in STRATEGIES.items():
        for f in dataclasses.fields(cls.Params):
            if type(f.default) is kind or (kind is int and f.default is None
                                            and f.type in ("int | None", int)):
                yield name, f.name


@pytest.mark.parametrize("name, param", list(_params(float)))
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_every_float_strategy_parameter_must_be_finite(name, param, value):
    with pytest.raises(ConfigError, match=f"{name}.{param}"):
        resolve({"strategies": [name], name: {param: value}})


@pytest.mark.parametrize("name, param", list(_params(int)))
@pytest.mark.parametrize("value", ["inf", "1e99", "1e30"])
def test_every_count_parameter_refuses_huge_or_infinite(name, param, value):
    with pytest.raises(ConfigError, match=f"{name}.{param}"):
        resolve({"strategies": [name], name: {param: value}})


def test_parameter_sets_are_not_empty():
    assert len(list(_params(float))) >= 15 and len(list(_params(int))) >= 15


@pytest.mark.parametrize("setting, needle", [
    ({"seed": -1, "class_order": "random"}, "seed must be from 0"),
    ({"seed": 2**64}, "seed must be from 0"),
    ({"threads": (os.cpu_count() or 1) + 1}, f"at most {os.cpu_count() or 1}"),
    ({"batch_size": "1e30"}, f"batch_size must be at most {MAX_COUNT}, got 1e\\+30"),
    ({"tasks": 2**40}, "tasks must be at most"),
    ({"momentum": "nan"}, "momentum"),
    ({"model_args": {"hidden": "inf"}}, "model.hidden"),
    ({"model_args": {"hidden": "8,1e99"}}, "model.hidden"),
])
def test_run_settings_out_of_range(setting, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve(TINY, setting)


def test_largest_seed_runs():
    assert len(learn(resolve(TINY, {"seed": 2**64 - 1, "class_order": "random"})).acc_matrix) == 2


# -- impossible or oversized models, refused before allocation ---------------------------------------

@pytest.mark.parametrize("setting, needle", [
    ({"model_args": {"hidden": (8,), "pool": 16}}, "model.pool=16"),
    ({"model": "convnet", "model_args": {"channels": (0, 4)}}, "model.channels=0,4"),
    ({"model": "convnet", "model_args": {"channels": (4,), "hidden": 0}}, "model.hidden=0"),
])
def test_impossible_model_arguments_name_the_setting(setting, needle):
    with pytest.raises(ConfigError, match=needle):
        learn(resolve({**TINY, "model_args": {}}, setting))


def test_model_larger_than_free_memory_is_refused_before_allocation(monkeypatch):
    monkeypatch.setattr(guards, "available_memory", lambda device="cpu": 2**30)
    start = time.perf_counter()
    with pytest.raises(BudgetError, match=r"model.hidden=10000000 needs .* more than the 1.00 GiB"):
        learn(resolve(TINY, {"model_args": {"hidden": 10**7}}))  # 2.4 GiB of weights alone
    assert time.perf_counter() - start < 10  # refused, not allocated and initialised


def test_plan_larger_than_free_memory_is_refused(monkeypatch):
    monkeypatch.setattr(guards, "available_memory", lambda device="cpu": 10**6)
    with pytest.raises(BudgetError, match=r"strategy:replay"):
        learn(resolve(TINY, {"strategies": ["replay"], "replay": {"size": 10**6}}))


# -- data that would be scored wrong, sized absurdly or read forever -----------------------------------

def _arrays(n=40, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.integers(0, 255, (n, 4, 4), dtype=np.uint8), y


def test_task_without_test_samples_is_refused_naming_its_classes():
    x, y = _arrays()
    keep = y < 2  # classes 2 and 3 have training samples but no test samples
    data = from_arrays(x, y, x[keep], y[keep])
    with pytest.raises(DataError, match=r"task 1 \(classes \[2, 3\]\) has no test samples"):
        make_stream(data, "split", "class", 2)
    make_stream(data, "split", "class", 1)  # one task holding every class can be scored


def test_label_that_would_size_a_huge_table_is_refused():
    x, y = _arrays()
    y = y.copy()
    y[0] = 2**40
    with pytest.raises(DataError, match="largest label is 1099511627776"):
        from_arrays(x, y, x, y)
    y[0] = 2**16 - 1  # sparse but small labels stay allowed
    assert from_arrays(x, y, x, y).n_classes == 2**16


def test_idx_header_sizes_are_python_integers(tmp_path):
    dims = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)  # 2**96 bytes: int64 would wrap around
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *dims)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + b"\0" * 16)
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 0))
    with pytest.raises(DataError, match=f"promises {math.prod(dims)} data bytes"):
        load_idx_dir(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_as_data_or_config_is_refused_not_read(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file or folder"):
        load_dataset(str(fifo))
    with pytest.raises(ConfigError, match="not a regular file"):
        resolve(__import__("edgelll.config", fromlist=["x"]).load_config_file(fifo))
    out = subprocess.run([sys.executable, "-m", "edgelll.cli.main", "learn", "--quiet", "--data",
                          str(fifo), "--out", str(tmp_path / "r")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "r").exists()


# -- the command line's stderr ----------------------------------------------------------------------

_WARN_THEN_FAIL = textwrap.dedent("""
    import sys
    import numpy, torch
    import edgelll.learner as L
    from edgelll.errors import DataError

    def load(spec, layout="auto"):
        torch.from_numpy(numpy.frombuffer(b"abcd", dtype=numpy.uint8))  # torch warns: read-only
        raise DataError("broken data")

    L.load_dataset = load
    from edgelll.cli.main import main
    sys.argv = ["edgelll", *sys.argv[1:]]
    main()
""")


@pytest.mark.parametrize("debug", [False, True])
def test_a_torch_warning_does_not_add_lines_to_the_error(tmp_path, debug):
    args = ["learn", "--quiet", "--out", str(tmp_path / "r"), *(["--debug"] if debug else [])]
    out = subprocess.run([sys.executable, "-c", _WARN_THEN_FAIL, *args], capture_output=True,
                         text=True, timeout=120)
    if debug:  # the traceback and the warning are shown
        assert "not writable" in out.stderr and "Traceback" in out.stderr
    else:
        assert out.returncode == 2 and out.stderr.splitlines() == ["error: broken data"]


def test_ctrl_c_names_the_real_run_directory(tmp_path, monkeypatch):
    from edgelll.learner import Learner

    def stop(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(Learner, "run", stop)
    result = _cli("learn", "--quiet", "-s", "naive", "--out", tmp_path / "r")
    assert result.exit_code == 130
    assert result.stderr.strip().endswith(f"--resume {tmp_path / 'r'}")
    assert "RUN_DIR" not in result.stderr


def test_ctrl_c_before_the_run_began_offers_no_resume(tmp_path, monkeypatch):
    import edgelll.learner as L

    def stop(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(L, "load_dataset", stop)
    result = _cli("learn", "--quiet", "--out", tmp_path / "r")
    assert result.exit_code == 130 and "before the run began" in result.stderr
    assert "--resume" not in result.stderr


def test_what_escapes_validation_is_one_line_and_a_traceback_under_debug(tmp_path, monkeypatch):
    import edgelll.learner as L

    def boom(*a, **k):
        raise ValueError("boom\nsecond line")
    monkeypatch.setattr(L, "make_stream", boom)
    line = _one_error_line(_cli("learn", "--quiet", "--out", tmp_path / "r"))
    assert "ValueError: boom second line" in line and "--debug" in line
    result = _cli("learn", "--quiet", "--debug", "--out", tmp_path / "r2")
    assert isinstance(result.exception, ValueError)


def test_resume_accepts_threads_quiet_and_debug(tmp_path):
    run = tmp_path / "r"
    base = ["--quiet", "-s", "naive", "--tasks", "2", "--steps", "2", "--set", "model.hidden=8"]
    assert _cli("learn", *base, "--out", run).exit_code == 0
    (run / "checkpoints" / "exp001.pt").unlink()
    result = _cli("learn", "--resume", run, "--threads", "1", "--quiet", "--debug")
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "exp001.pt").is_file()

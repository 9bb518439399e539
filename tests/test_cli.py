"""End-to-end tests of the ``edgelll`` command line (``edgelll.cli.main.app``) via typer's CliRunner.

Every training run is tiny: the embedded ``digits`` set, one epoch (or a few steps), ``--quiet``,
and a run directory under pytest's ``tmp_path``. Bad input must give exit code 2, exactly one
``error:`` line on stderr, no traceback, and leave the file system as it was.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import edgelll
from edgelll.cli.main import app
from edgelll.errors import ConfigError, EdgelllError

N_EXP = 5  # digits splits into 5 experiences of 2 classes by default
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- helpers -----------------------------------------------------------------------------------

def invoke(*args: str, **kw):
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "FORCE_COLOR": None})
    return runner.invoke(app, [str(a) for a in args], **kw)


def plain(text: str) -> str:
    return ANSI.sub("", text)


def learn(*args, quiet: bool = True):
    """``edgelll learn`` on the embedded digits for one epoch, unless ``args`` say otherwise."""
    args = [str(a) for a in args]
    base = [] if "--data" in args else ["--data", "digits"]
    if "--epochs" not in args and "--steps" not in args and "--resume" not in args:
        base += ["--epochs", "1"]
    if "--resume" in args:
        base = []
    if "--plot" not in args:  # drawn before exit, so a test sees the run directory complete
        base += ["--plot", "inline"]
    return invoke("learn", *base, *args, *(["--quiet"] if quiet else []))


def assert_ok(result) -> None:
    assert result.exit_code == 0, (
        f"exit {result.exit_code}; exception {result.exception!r}; output:\n{result.output}")


def assert_one_line_error(result, *needles: str) -> str:
    err = plain(result.stderr)
    assert result.exit_code == 2, (
        f"exit {result.exit_code}; exception {result.exception!r}; stderr:\n{err}")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("error:"), lines[0]
    assert plain(result.stdout).strip() == "", result.stdout
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(root: Path) -> dict[str, str | None]:
    """Every path under ``root`` with a hash of its bytes (None for directories)."""
    out: dict[str, str | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return out


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted((Path(run_dir) / "checkpoints").glob("*.pt"))


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- shared runs (each made once per module) ----------------------------------------------------

@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, object]:
    """replay + ewc on digits, one epoch, CPU; the run the output checks and --resume compare to."""
    run_dir = tmp_path_factory.mktemp("full") / "A"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(run_dir.parent)
        result = learn("--strategy", "replay", "--strategy", "ewc", "--set", "replay.size=50",
                       "--set", "ewc.lam=100", "--set", "ewc.fisher_samples=128",
                       "--device", "cpu", "--threads", "2", "--seed", "0", "--out", run_dir)
    assert_ok(result)
    return run_dir, result


@pytest.fixture(scope="module")
def naive_run(tmp_path_factory) -> Path:
    """naive fine-tuning on digits, one epoch, no budget: the baseline for compute checks."""
    run_dir = tmp_path_factory.mktemp("naive") / "N"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(run_dir.parent)
        result = learn("-s", "naive", "--device", "cpu", "--out", run_dir)
    assert_ok(result)
    return run_dir


# -- help, version, list -----------------------------------------------------------------------

def test_app_help():
    r = invoke("--help")
    assert_ok(r)
    out = plain(r.stdout)
    for word in ("learn", "list", "--version", "--debug"):
        assert word in out


def test_learn_help_mentions_key_options():
    r = invoke("learn", "--help")
    assert_ok(r)
    out = plain(r.stdout)
    for opt in ("--strategy", "--memory", "--set", "--resume", "--data", "--out", "--compute",
                "--compute-flops", "--quiet"):
        assert opt in out, opt


def test_list_help():
    r = invoke("list", "--help")
    assert_ok(r)
    out = plain(r.stdout)
    for kind in ("strategies", "models", "datasets", "devices"):
        assert kind in out


def test_version():
    r = invoke("--version")
    assert_ok(r)
    assert r.stdout.strip() == "edgelll 0.1.0"
    assert edgelll.__version__ == "0.1.0"


EXPECTED = {
    "strategies": ("naive", "joint", "independent", "replay", "ewc"),
    "models": ("mlp", "convnet"),
    "datasets": ("digits", "mnist"),
    "devices": ("stm32h7",),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_list_kind(kind):
    r = invoke("list", kind)
    assert_ok(r)
    out = plain(r.stdout)
    words = set(re.findall(r"[\w-]+", out))
    for name in EXPECTED[kind]:
        assert name in words, f"{name} missing from `list {kind}`:\n{out}"
    others = {k for k in EXPECTED if k != kind}
    assert not any(re.search(rf"^\s*{k}\s*$", out, re.M) for k in others), out  # only this table


def test_list_all():
    r = invoke("list")
    assert_ok(r)
    words = set(re.findall(r"[\w-]+", plain(r.stdout)))
    for kind, names in EXPECTED.items():
        assert kind in words
        assert set(names) <= words, (kind, set(names) - words)


def test_list_unknown_kind():
    line = assert_one_line_error(invoke("list", "foo"), "'foo'")
    for kind in EXPECTED:
        assert kind in line


def test_list_close_kind_suggested():
    assert_one_line_error(invoke("list", "strategie"), "did you mean 'strategies'")


# -- a real run and what it writes ---------------------------------------------------------------

def test_run_is_quiet(full_run):
    run_dir, result = full_run
    assert result.stdout == ""
    assert result.stderr == f"run directory: {run_dir}\n"  # -q: only where the run is


def test_run_writes_config(full_run):
    run_dir, _ = full_run
    cfg = read_json(run_dir / "config.json")
    assert cfg["data"] == "digits"
    assert cfg["strategies"] == ["replay", "ewc"]
    assert cfg["strategy_args"]["replay"]["size"] == 50
    assert cfg["strategy_args"]["ewc"]["lam"] == 100.0
    assert cfg["strategy_args"]["ewc"]["fisher_samples"] == 128
    assert cfg["epochs"] == 1
    assert cfg["device"] == "cpu"
    assert cfg["seed"] == 0
    assert cfg["tasks"] == N_EXP


def test_run_writes_env(full_run):
    run_dir, _ = full_run
    env = read_json(run_dir / "env.json")
    assert env["edgelll"] == edgelll.__version__
    assert env["torch"] == torch.__version__
    assert env["device"] == "cpu"
    assert "python" in env and "platform" in env


def test_run_writes_metrics(full_run):
    run_dir, _ = full_run
    m = read_json(run_dir / "metrics.json")
    for key in ("acc_matrix", "acc", "bwt", "fwt", "forgetting", "seconds", "memory_bytes"):
        assert key in m, key
    acc = m["acc_matrix"]
    assert len(acc) == N_EXP and all(len(row) == N_EXP for row in acc)
    assert all(0.0 <= a <= 1.0 for row in acc for a in row)
    assert math.isclose(m["acc"], sum(acc[-1]) / N_EXP, rel_tol=1e-9, abs_tol=1e-12)
    for key in ("bwt", "fwt", "forgetting"):
        assert isinstance(m[key], float) and math.isfinite(m[key]), key
    assert m["seconds"] > 0
    assert m["complete"] is True
    assert [e["experience"] for e in m["experiences"]] == list(range(N_EXP))
    mem = m["memory_bytes"]
    comps = mem["components"]
    for key in ("parameters", "gradients", "optimizer", "activations", "strategy:replay",
                "strategy:ewc"):
        assert key in comps, key
    assert comps["parameters"] > 0 and comps["strategy:replay"] > 0
    assert mem["total"] == sum(comps.values())
    assert mem["limit"] is None


def test_run_writes_acc_matrix_csv(full_run):
    run_dir, _ = full_run
    acc = read_json(run_dir / "metrics.json")["acc_matrix"]
    with open(run_dir / "acc_matrix.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["after_experience"] + [f"exp{j + 1}" for j in range(N_EXP)]
    assert len(rows) == 1 + N_EXP
    for i, row in enumerate(rows[1:]):
        assert int(row[0]) == i + 1  # numbered from 1, as the terminal and the plot do
        assert len(row) == 1 + N_EXP
        for j, cell in enumerate(row[1:]):
            assert abs(float(cell) - acc[i][j]) <= 1e-6, (i, j, cell, acc[i][j])


def test_run_writes_png(full_run):
    run_dir, _ = full_run
    data = (run_dir / "accuracy.png").read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1000


def test_run_writes_loadable_checkpoints(full_run):
    run_dir, _ = full_run
    paths = checkpoints(run_dir)
    assert [p.name for p in paths] == [f"exp{i:03d}.pt" for i in range(N_EXP)]
    cfg = read_json(run_dir / "config.json")
    acc = read_json(run_dir / "metrics.json")["acc_matrix"]
    for i, path in enumerate(paths):
        ckpt = torch.load(path, weights_only=True)
        assert isinstance(ckpt, dict)
        assert ckpt["next_experience"] == i + 1
        assert ckpt["config"] == cfg
        assert ckpt["acc"] == acc[: i + 1]
        assert all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())
    # nothing else lies around: no temporary files from the atomic writes
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# -- default run directory -----------------------------------------------------------------------

def test_default_run_dir_is_numbered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ("-s", "naive", "--steps", "3", "--device", "cpu")
    assert_ok(learn(*args))
    root = tmp_path / "runs" / "learn"
    first = root / "naive-digits-split-class"
    assert (first / "metrics.json").is_file()
    before = snapshot(first)
    assert_ok(learn(*args))
    second = root / "naive-digits-split-class-2"
    assert sorted(p.name for p in root.iterdir()) == [first.name, second.name]
    assert snapshot(first) == before
    assert read_json(second / "metrics.json")["complete"] is True
    assert len(checkpoints(second)) == N_EXP
    assert read_json(second / "config.json") == read_json(first / "config.json")


# -- resume --------------------------------------------------------------------------------------

def test_resume_after_crash_matches_uninterrupted_run(full_run, tmp_path, monkeypatch):
    run_a, _ = full_run
    monkeypatch.chdir(tmp_path)
    run_b = copy_run(run_a, tmp_path / "B")
    kept = {p.name: p.read_bytes() for p in checkpoints(run_b)[:3]}
    for p in checkpoints(run_b)[3:]:
        p.unlink()
    (run_b / "metrics.json").rename(tmp_path / "B-metrics.json")
    config_before = (run_b / "config.json").read_bytes()

    r = learn("--resume", run_b)
    assert_ok(r)
    assert r.stdout == ""

    ma, mb = read_json(run_a / "metrics.json"), read_json(run_b / "metrics.json")
    assert mb["acc_matrix"] == ma["acc_matrix"]
    assert mb["complete"] is True
    assert [e["steps"] for e in mb["experiences"]] == [e["steps"] for e in ma["experiences"]]
    assert [p.name for p in checkpoints(run_b)] == [f"exp{i:03d}.pt" for i in range(N_EXP)]
    assert {p.name: p.read_bytes() for p in checkpoints(run_b)[:3]} == kept
    assert (run_b / "config.json").read_bytes() == config_before
    assert (run_b / "acc_matrix.csv").read_text() == (run_a / "acc_matrix.csv").read_text()
    assert (run_b / "accuracy.png").read_bytes()[:8] == PNG_MAGIC


def test_resume_complete_run_finishes_its_outputs(naive_run, tmp_path, monkeypatch):
    """Killed while the final plot was drawn: --resume succeeds and writes what is missing."""
    monkeypatch.chdir(tmp_path)
    run = copy_run(naive_run, tmp_path / "done")
    want = read_json(run / "metrics.json")
    for name in ("accuracy.png", "acc_matrix.csv", "metrics.json"):
        (run / name).unlink()
    ckpts = {p.name: p.read_bytes() for p in checkpoints(run)}
    result = learn("--resume", run, quiet=False)
    assert_ok(result)
    assert "summary" in plain(result.stdout)
    assert (run / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    got = read_json(run / "metrics.json")
    assert got["complete"] and got["acc_matrix"] == want["acc_matrix"] and got["acc"] == want["acc"]
    # The whole run's time (stored in the checkpoint), not the moment the resume took.
    assert got["seconds"] >= sum(e["seconds"] for e in want["experiences"]) > 0
    assert len((run / "acc_matrix.csv").read_text().splitlines()) == N_EXP + 1
    assert {p.name: p.read_bytes() for p in checkpoints(run)} == ckpts  # nothing retrained


@pytest.mark.parametrize("extra", [["--epochs", "2"], ["-s", "ewc"], ["--set", "lr=0.1"],
                                   ["--out", "elsewhere"], ["--memory", "4MiB"],
                                   ["--device", "cpu"]],
                         ids=["epochs", "strategy", "set", "out", "memory", "device"])
def test_resume_with_other_options_refused(naive_run, tmp_path, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    run = copy_run(naive_run, tmp_path / "r")
    checkpoints(run)[-1].unlink()  # resumable, so only the extra option can be the problem
    before = snapshot(tmp_path)
    assert_one_line_error(learn("--resume", run, *extra), "--resume")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("make", ["empty", "missing", "no-config"])
def test_resume_without_config_refused(naive_run, tmp_path, monkeypatch, make):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "target"
    if make == "empty":
        target.mkdir()
    elif make == "no-config":
        copy_run(naive_run, target)
        checkpoints(target)[-1].unlink()
        (target / "config.json").unlink()
    before = snapshot(tmp_path)
    assert_one_line_error(learn("--resume", target), "config.json")
    assert snapshot(tmp_path) == before


def test_resume_corrupt_checkpoint_named(naive_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = copy_run(naive_run, tmp_path / "torn")
    checkpoints(run)[-1].unlink()  # a crash after experience 3 ...
    last = checkpoints(run)[-1]  # ... that tore the write of its checkpoint
    with open(last, "r+b") as fh:
        fh.truncate(last.stat().st_size // 3)
    before = snapshot(tmp_path)
    line = assert_one_line_error(learn("--resume", run), last.name)
    assert "checkpoint" in line
    assert snapshot(tmp_path) == before


# -- bad input: exit 2, one line, nothing touched -------------------------------------------------

def _tiny_npz(path: Path, **override) -> None:
    """A valid 4-class 4x4 uint8 set, with any array replaced by ``override``."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (40, 4, 4), dtype=np.uint8),
        "y_train": np.arange(40) % 4,
        "x_test": rng.integers(0, 256, (8, 4, 4), dtype=np.uint8),
        "y_test": np.arange(8) % 4,
    }
    arrays.update(override)
    np.savez(path, **arrays)


def _nan_x(path: Path) -> None:
    x = np.random.default_rng(1).random((40, 4, 4)).astype(np.float32)
    x[3, 1, 2] = np.nan
    _tiny_npz(path, x_train=x, x_test=np.zeros((8, 4, 4), np.float32))


SETUP = {
    "good.npz": lambda p: _tiny_npz(p),
    "garbage.npz": lambda p: p.write_bytes(b"\x00\xffnot a zip archive" * 64),
    "nan.npz": _nan_x,
    "negative.npz": lambda p: _tiny_npz(p, y_train=np.arange(40) % 4 - 1),
    "unseen.npz": lambda p: _tiny_npz(p, y_test=np.arange(8) % 4 + 7),
    "too-big.npz": lambda p: _tiny_npz(p, y_train=(np.arange(40) % 4).astype(np.uint64)
                                       + np.uint64(2**63)),
    "bad.toml": lambda p: p.write_text("tasks = [\n"),
    "existing": lambda p: (p.mkdir(), (p / "notes.txt").write_bytes(b"keep me\n"),
                           (p / "checkpoints").mkdir(), (p / "checkpoints" / "x.pt").write_bytes(b"1")),
    "a-file": lambda p: p.write_bytes(b"not a directory\n"),
}

BAD = [
    pytest.param(["-s", "replya"], ["unknown strategy 'replya'", "did you mean 'replay'"],
                 id="unknown-strategy"),
    pytest.param(["--model", "mpl"], ["unknown model 'mpl'", "mlp"], id="unknown-model"),
    pytest.param(["--scenario", "clas"], ["unknown scenario 'clas'", "class"], id="unknown-scenario"),
    pytest.param(["--stream", "splt"], ["unknown stream 'splt'"], id="unknown-stream"),
    pytest.param(["--data", "missing.npz"], ["missing.npz"], id="data-missing"),
    pytest.param(["--data", "garbage.npz", "--tasks", "2"], ["garbage.npz"], id="data-corrupt"),
    pytest.param(["--data", "nan.npz", "--tasks", "2"], ["x_train", "NaN"], id="data-nan"),
    pytest.param(["--data", "negative.npz", "--tasks", "2"], ["y_train", "negative"],
                 id="labels-negative"),
    pytest.param(["--data", "unseen.npz", "--tasks", "2"], ["y_test", "never seen"],
                 id="labels-out-of-range"),
    pytest.param(["--data", "too-big.npz", "--tasks", "2"], ["y_train", "int64"],
                 id="labels-beyond-int64"),
    pytest.param(["--tasks", "0"], ["tasks", "0"], id="tasks-0"),
    pytest.param(["--tasks", "11"], ["10 classes", "11"], id="tasks-11"),
    pytest.param(["--memory", "1KiB"], ["--memory", "parameters", "gradients", "optimizer",
                                        "activations"], id="memory-too-small"),
    pytest.param(["--memory", "abc"], ["'abc'"], id="memory-unreadable"),
    pytest.param(["--set", "replay.size"], ["KEY=VALUE", "replay.size"], id="set-without-equals"),
    pytest.param(["--set", "replay.nope=1"], ["nope", "size"], id="set-unknown-param"),
    pytest.param(["-s", "ewc", "--set", "ewc.lam=-5"], ["ewc.lam"], id="set-negative-lambda"),
    pytest.param(["--set", "replay.size=abc"], ["replay.size", "'abc'"], id="set-not-a-number"),
    pytest.param(["--set", "ewc.lam=1"], ["ewc", "--strategy ewc"], id="set-strategy-not-in-run"),
    pytest.param(["--lr", "-1"], ["lr"], id="lr-negative"),
    pytest.param(["--optimizer-state", "sometimes"], ["optimizer_state 'sometimes'", "keep"],
                 id="optimizer-state-unknown"),
    pytest.param(["--compute", "0"], ["compute"], id="compute-0"),
    pytest.param(["--compute-flops", "10"], ["--compute-flops"], id="compute-flops-below-one-step"),
    pytest.param(["--device", "cuda"], ["cuda"], id="device-cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")),
    pytest.param(["--config", "missing.toml"], ["missing.toml"], id="config-missing"),
    pytest.param(["--config", "bad.toml"], ["bad.toml"], id="config-unparsable"),
    pytest.param(["--out", "existing"], ["existing", "already exists", "choose another --out"],
                 id="out-exists-non-empty"),
    pytest.param(["--out", "a-file"], ["a-file", "already exists"], id="out-is-a-file"),
    pytest.param(["--out", "a-file/sub"], ["a-file/sub"], id="out-under-a-file"),
    pytest.param(["--data", "a\nb.npz"], ["a\\nb.npz"], id="newline-in-path-stays-one-line"),
]


@pytest.mark.parametrize("args, needles", BAD)
def test_bad_input(tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    for name, make in SETUP.items():
        make(tmp_path / name)
    if "--out" not in args:
        args = [*args, "--out", "out"]
    before = snapshot(tmp_path)
    assert_one_line_error(learn(*args), *needles)
    assert snapshot(tmp_path) == before  # nothing created, nothing modified (incl. `existing`)
    assert not (tmp_path / "out").exists()


def test_good_tiny_npz_runs(tmp_path, monkeypatch):
    """The control for the bad .npz files above: the same arrays, unbroken, train fine."""
    monkeypatch.chdir(tmp_path)
    _tiny_npz(tmp_path / "good.npz")
    assert_ok(learn("--data", "good.npz", "--tasks", "2", "-s", "naive", "--out", "out"))
    assert len(read_json(tmp_path / "out" / "metrics.json")["acc_matrix"]) == 2


def test_bad_input_without_out_creates_no_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(learn("--tasks", "11"), "11")
    assert list(tmp_path.iterdir()) == []


# -- --debug ------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["root", "learn"])
def test_debug_propagates_exception(tmp_path, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    args = ["learn", "--data", "digits", "-s", "replya", "--out", "out", "--quiet"]
    args = ["--debug", *args] if where == "root" else [*args, "--debug"]
    r = invoke(*args)
    assert r.exit_code != 0
    assert isinstance(r.exception, ConfigError)
    assert "replya" in str(r.exception)
    with pytest.raises(ConfigError):
        invoke(*args, catch_exceptions=False)
    assert not (tmp_path / "out").exists()


def test_debug_prints_traceback_in_a_real_process(tmp_path):
    cmd = [sys.executable, "-m", "edgelll.cli.main", "--debug", "learn", "--data", "digits",
           "--tasks", "0", "--out", str(tmp_path / "out"), "--quiet"]
    env = {**os.environ, "NO_COLOR": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert p.returncode != 0 and p.returncode != 2
    assert "Traceback" in p.stderr
    assert "ConfigError" in p.stderr and "tasks must be at least 1" in p.stderr
    p = subprocess.run(cmd[:3] + cmd[4:], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=env)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.splitlines() == ["error: tasks must be at least 1, got 0"]


# -- errors that are not EdgelllError ----------------------------------------------------------

@pytest.fixture
def failing_learn(monkeypatch, tmp_path):
    """Make the library's learn() raise ``exc`` so the CLI's error handling can be checked."""
    import edgelll.learner

    monkeypatch.chdir(tmp_path)

    def arm(exc: BaseException):
        def boom(*args, **kwargs):
            raise exc
        monkeypatch.setattr(edgelll.learner, "learn", boom)
    return arm


@pytest.mark.parametrize("exc", [MemoryError(), torch.OutOfMemoryError("CUDA out of memory.")],
                         ids=["MemoryError", "torch.OutOfMemoryError"])
def test_out_of_memory_is_one_line(failing_learn, exc):
    failing_learn(exc)
    assert_one_line_error(learn("-s", "naive", "--out", "out"), "out of memory")


def test_other_runtime_errors_are_one_line_and_shown_under_debug(failing_learn):
    failing_learn(RuntimeError("a genuine bug"))
    line = assert_one_line_error(learn("-s", "naive", "--out", "out"))
    assert "unexpected RuntimeError: a genuine bug" in line and "--debug" in line
    r = learn("-s", "naive", "--out", "out", "--debug")
    assert isinstance(r.exception, RuntimeError) and "a genuine bug" in str(r.exception)


def test_keyboard_interrupt_exits_130(failing_learn):
    failing_learn(KeyboardInterrupt())
    r = learn("-s", "naive", "--out", "out")
    assert r.exit_code == 130
    assert "before the run began" in r.stderr and "RUN_DIR" not in r.stderr  # nothing to resume
    assert "Traceback" not in r.output


def test_library_error_message_is_shown_verbatim(failing_learn):
    failing_learn(EdgelllError("training diverged on experience 3 (loss nan); lower --lr"))
    line = assert_one_line_error(learn("-s", "naive", "--out", "out"))
    assert line == "error: training diverged on experience 3 (loss nan); lower --lr"


# -- compute budget -----------------------------------------------------------------------------

def test_compute_steps_budget(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_ok(learn("-s", "naive", "--compute", "3", "--device", "cpu", "--out", "out"))
    assert read_json(tmp_path / "out" / "config.json")["compute_steps"] == 3
    m = read_json(tmp_path / "out" / "metrics.json")
    assert [e["steps"] for e in m["experiences"]] == [3] * N_EXP


def test_compute_flops_budget(naive_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    free = read_json(naive_run / "metrics.json")["experiences"]
    free_steps = [e["steps"] for e in free]
    assert min(free_steps) > 3  # one epoch of digits is ~9 batches of 32
    limit = min(e["flops"] for e in free) / 3  # room for about a third of the epoch
    assert_ok(learn("-s", "naive", "--compute-flops", repr(limit), "--device", "cpu",
                    "--out", "out"))
    assert read_json(tmp_path / "out" / "config.json")["compute_flops"] == limit
    capped = read_json(tmp_path / "out" / "metrics.json")["experiences"]
    for e, n_free in zip(capped, free_steps, strict=True):
        assert 1 <= e["steps"] < n_free
        assert 0 < e["flops"] <= limit


# -- memory budget ------------------------------------------------------------------------------

def test_memory_budget_respected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cap = 2 * 2**20
    assert_ok(learn("--memory", "2MiB", "-s", "replay", "--model", "mlp-small", "--device", "cpu",
                    "--out", "out"))
    assert read_json(tmp_path / "out" / "config.json")["memory"] == cap
    mem = read_json(tmp_path / "out" / "metrics.json")["memory_bytes"]
    assert mem["limit"] == cap
    assert mem["planned"]["total"] <= cap
    assert mem["total"] <= cap
    assert mem["total"] == sum(mem["components"].values())
    assert mem["components"]["strategy:replay"] > 0  # the buffer got the room that was left


# -- inputs that once crashed with a traceback inside the library ----------------------------------

NON_FINITE_AND_MISTYPED = [
    pytest.param(["--compute-flops", "nan"], ["compute_flops"], id="compute-flops-nan"),
    pytest.param(["--compute-flops", "inf"], ["compute_flops"], id="compute-flops-inf"),
    pytest.param(["--config", "strategies5.json"], ["strategies"], id="config-strategies-not-a-list"),
]


@pytest.mark.parametrize("args, needles", NON_FINITE_AND_MISTYPED)
def test_bad_input_non_finite_and_mistyped(tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "strategies5.json").write_text('{"strategies": 5}\n')
    before = snapshot(tmp_path)
    assert_one_line_error(learn(*args, "--out", "out"), *needles)
    assert snapshot(tmp_path) == before


def test_console_script_turns_usage_errors_into_one_line(tmp_path):
    """The installed entry point (not the test runner) also answers parse errors in one line."""
    import subprocess
    import sys
    cmd = [sys.executable, "-c", "import sys; from edgelll.cli.main import main; sys.argv[0]='edgelll'; main()"]
    for args in (["learn", "--tasks", "abc"], ["learn", "--bogus"]):
        proc = subprocess.run(cmd + args, capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
        assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())

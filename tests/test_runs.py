"""Run directories: writes that fail name their path and leave nothing behind, a directory is
claimed and locked by one process at a time, an abandoned skeleton is reused, and a checkpoint
is checked field by field before a resume trusts it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edgelll.config import resolve
from edgelll.errors import CheckpointError, ConfigError, OutputError
from edgelll.learner import Learner, learn
from edgelll.runs import (RunLock, atomic_write, checkpoint_path, create_run_dir, load_checkpoint,
                          save_checkpoint, write_json)

TINY = {"strategies": ["naive"], "tasks": 2, "steps": 3, "batch_size": 16,
        "model_args": {"hidden": (8,)}}


def _cfg(**kw):
    return resolve(TINY, kw)


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "done"
    learn(_cfg(), run_dir=run_dir)
    return run_dir


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


# -- writes that fail ---------------------------------------------------------------------------

def test_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"old": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="metrics.json: No space left on device"):
        write_json(target, {"new": 2})
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_checkpoint_on_full_disk_is_an_output_error(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    path = tmp_path / "exp000.pt"
    with pytest.raises(OutputError, match="exp000.pt"):
        save_checkpoint(path, {"w": torch.ones(3)})
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder is needed: refused even for root
    with pytest.raises(OutputError, match="file"):
        atomic_write(blocker / "config.json", lambda fh: fh.write(b"{}"))
    with pytest.raises(ConfigError, match="already exists and is not a folder"):
        learn(_cfg(), run_dir=blocker)


# -- claiming and locking -------------------------------------------------------------------------

def test_lock_refuses_a_second_holder_until_released(tmp_path):
    create_run_dir(tmp_path / "r")
    first = RunLock(tmp_path / "r")
    with pytest.raises(OutputError, match="in use by another edgelll process"):
        RunLock(tmp_path / "r")
    first.release()
    RunLock(tmp_path / "r").release()


def test_lock_held_by_another_process_refuses_new_run_and_resume(tmp_path, done_run):
    run = _copy(done_run, tmp_path / "r")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code = textwrap.dedent(f"""
        import sys, time
        from edgelll.runs import RunLock
        locks = [RunLock({str(run)!r}), RunLock({str(fresh)!r})]
        print("held", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=f"run directory {run} is in use"):
            Learner(_cfg(), run_dir=run, resume=True)
        with pytest.raises(OutputError, match="in use"):
            Learner(_cfg(), run_dir=fresh)
        assert not (fresh / "config.json").exists()
    finally:
        proc.communicate("", timeout=30)
    Learner(_cfg(), run_dir=fresh)  # the lock went with the process


def test_second_run_into_a_claimed_directory_is_refused(tmp_path):
    a = Learner(_cfg(), run_dir=tmp_path / "out")
    config = (tmp_path / "out" / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        Learner(_cfg(lr=0.5), run_dir=tmp_path / "out")
    assert (tmp_path / "out" / "config.json").read_bytes() == config
    a.run()
    with pytest.raises(OutputError, match="in use"):  # a still holds it: resume must wait
        Learner(_cfg(), run_dir=tmp_path / "out", resume=True)
    a.lock.release()
    Learner(_cfg(), run_dir=tmp_path / "out", resume=True).run()


def test_skeleton_of_a_run_killed_before_config_is_reused(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".lock").touch()
    (run / "env.json").write_text("{")  # torn: the kill came while it was written
    (run / ".config.json.abc.tmp").write_text("{")
    learn(_cfg(), run_dir=run)
    assert json.loads((run / "config.json").read_text())["strategies"] == ["naive"]
    assert json.loads((run / "env.json").read_text())["edgelll"]
    assert not list(run.rglob("*.tmp"))


def test_directory_with_foreign_files_is_not_taken(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds other files"):
        learn(_cfg(), run_dir=run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


# -- checkpoints a resume must not trust -----------------------------------------------------------

def _tamper(run: Path, index: int, change) -> Path:
    path = checkpoint_path(run, index)
    ckpt = load_checkpoint(path)
    change(ckpt)
    ckpt.pop("format")
    save_checkpoint(path, ckpt)
    return path


def _set(key, value):
    return lambda c: c.__setitem__(key, value)


@pytest.mark.parametrize("change, needle", [
    (_set("next_experience", 7), "next_experience 7 is outside 1..2"),
    (_set("next_experience", 1), "does not follow its name exp001.pt"),
    (_set("acc", [[0.5, 0.0]]), "acc is not 2 rows"),
    (_set("acc", [[0.5, 0.1], [0.4, 1.5]]), "acc is not 2 rows"),
    (_set("random_acc", [0.1]), "random_acc"),
    (_set("stats", [{"experience": 0}]), "stats"),
    (_set("class_order", [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), "class_order"),
    (_set("strategies", {}), "holds strategies"),
    (_set("elapsed", float("nan")), "elapsed"),
    (lambda c: next(iter(c["model"].values())).fill_(float("nan")), "non-finite values in model"),
], ids=["next-range", "next-name", "acc-rows", "acc-range", "random-acc", "stats", "class-order",
        "strategies", "elapsed", "nan-weights"])
def test_inconsistent_checkpoint_is_refused_before_anything_is_restored(
        done_run, tmp_path, change, needle):
    run = _copy(done_run, tmp_path / "r")
    _tamper(run, 1, change)
    metrics = (run / "metrics.json").read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or not from this run") as info:
        Learner(_cfg(), run_dir=run, resume=True)
    assert needle in str(info.value) and "delete it to resume from the one before" in str(info.value)
    assert (run / "metrics.json").read_bytes() == metrics


def test_deleting_the_refused_checkpoint_resumes_from_the_one_before(done_run, tmp_path):
    run = _copy(done_run, tmp_path / "r")
    _tamper(run, 1, lambda c: next(iter(c["model"].values())).fill_(float("nan")))
    with pytest.raises(CheckpointError, match="non-finite"):
        Learner(_cfg(), run_dir=run, resume=True)
    checkpoint_path(run, 1).unlink()
    result = Learner(_cfg(), run_dir=run, resume=True).run()
    assert result.acc_matrix == json.loads((done_run / "metrics.json").read_text())["acc_matrix"]


def test_complete_run_resumes_to_its_summary_and_whole_time(done_run, tmp_path):
    run = _copy(done_run, tmp_path / "r")
    before = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()
    result = Learner(_cfg(), run_dir=run, resume=True).run()
    assert result.acc_matrix == before["acc_matrix"]
    stored = load_checkpoint(checkpoint_path(run, 1))["elapsed"]
    assert result.metrics["seconds"] >= stored > 0


def test_resume_may_change_threads_only(done_run, tmp_path):
    run = _copy(done_run, tmp_path / "r")
    checkpoint_path(run, 1).unlink()
    with pytest.raises(CheckpointError, match="different config"):
        Learner(_cfg(lr=0.5), run_dir=run, resume=True)
    result = Learner(_cfg(threads=1), run_dir=run, resume=True).run()
    assert result.acc_matrix == json.loads((done_run / "metrics.json").read_text())["acc_matrix"]

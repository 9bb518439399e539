"""When accuracy.png is drawn: inline, by a detached process that the caller can wait for, or not;
never torn, even when the drawing process is killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgelll import learn
from edgelll.cli.main import app
from edgelll.config import resolve
from edgelll.errors import ConfigError
from edgelll.plot_job import PlotError, draw_plot, main
from edgelll.runs import remove_stale_temporaries

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every complete PNG


def _cfg():
    return resolve({"data": "digits", "strategies": ["naive"], "steps": 3, "tasks": 2})


def _assert_whole_png(path: Path) -> bytes:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data.endswith(PNG_END) and len(data) > 1000
    return data


def test_inline_is_drawn_before_learn_returns(tmp_path):
    result = learn(_cfg(), run_dir=tmp_path / "run")
    assert result.plot.done()
    assert result.plot.wait(timeout=0) == tmp_path / "run" / "accuracy.png"
    _assert_whole_png(tmp_path / "run" / "accuracy.png")


def test_background_returns_first_and_draws_the_same_plot(tmp_path):
    inline = learn(_cfg(), run_dir=tmp_path / "inline")
    result = learn(_cfg(), run_dir=tmp_path / "bg", plot="background")
    assert result.plot.process is not None  # drawn by another process, not this one
    assert result.metrics["acc"] == inline.metrics["acc"]
    path = result.plot.wait(timeout=120)
    assert result.plot.done()
    assert _assert_whole_png(path) == _assert_whole_png(inline.plot.path)
    assert not list((tmp_path / "bg").glob(".*.tmp"))


def test_none_draws_nothing_and_a_bad_mode_is_refused_before_training(tmp_path):
    result = learn(_cfg(), run_dir=tmp_path / "none", plot="none")
    assert result.plot is None
    assert (tmp_path / "none" / "metrics.json").is_file()
    assert not (tmp_path / "none" / "accuracy.png").exists()
    with pytest.raises(ConfigError, match="unknown plot mode 'later'.*background"):
        learn(_cfg(), run_dir=tmp_path / "bad", plot="later")
    assert not (tmp_path / "bad").exists()


def test_cli_backgrounds_the_plot_by_default(tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["learn", "--data", "digits", "--steps", "3", "--quiet",
                                 "--out", str(run)])
    assert r.exit_code == 0, r.output
    assert (run / "metrics.json").is_file()
    deadline = time.monotonic() + 120
    while not (run / "accuracy.png").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _assert_whole_png(run / "accuracy.png")
    r = CliRunner().invoke(app, ["learn", "--data", "digits", "--plot", "soon", "--out",
                                 str(tmp_path / "bad")])
    assert r.exit_code == 2 and "unknown plot mode 'soon'" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_a_killed_render_leaves_no_torn_png_and_can_be_redrawn(tmp_path):
    run = tmp_path / "run"
    learn(_cfg(), run_dir=run, plot="none")
    job = draw_plot(run, {}, "killed", mode="background")
    deadline = time.monotonic() + 120
    while not list(run.glob(".accuracy.png.*.tmp")):  # the render has begun writing
        assert job.process.poll() is None and time.monotonic() < deadline, "render never started"
        time.sleep(0.002)
    os.killpg(job.process.pid, signal.SIGKILL)
    job.process.wait()
    png = run / "accuracy.png"
    if png.exists():  # it finished in the instant before the kill: then it is whole
        _assert_whole_png(png)
    else:
        with pytest.raises(PlotError, match="exit -9"):
            job.wait()
    assert remove_stale_temporaries(run) == (0 if png.exists() else 1)
    assert main([str(run), "redrawn"]) == 0
    _assert_whole_png(png)
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [".lock", "accuracy.png", "acc_matrix.csv", "checkpoints", "config.json", "env.json",
         "metrics.json"])


def test_a_failed_render_is_reported_and_writes_nothing(tmp_path, capsys):
    job = draw_plot(tmp_path, {}, "no metrics here", mode="background")
    with pytest.raises(PlotError, match="exit 2.*edgelll.plot_job"):
        job.wait(timeout=120)
    assert main([str(tmp_path)]) == 2
    assert "metrics.json" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main([]) == 2

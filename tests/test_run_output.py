"""What a run prints: plain progress lines with an ETA when stdout is a pipe, the run directory
first, and one line that points a device profile's name to the right option."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from rich.console import Console
from typer.testing import CliRunner

from edgelll.cli.main import app
from edgelll.report import Reporter

ANSI = re.compile(r"\x1b\[")


def test_piped_run_prints_plain_lines_with_eta(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "EDGELLL_PROGRESS_SECONDS": "0", "COLUMNS": "120"}
    p = subprocess.run([sys.executable, "-m", "edgelll.cli.main", "learn", "--tasks", "2",
                        "--steps", "60", "--device", "cpu", "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert not ANSI.search(p.stdout)  # no progress-bar control codes in a log
    assert lines[0] == f"run directory: {out}"
    assert any(re.fullmatch(r"training: 2 experiences, about 120 optimiser steps .*", x) for x in lines)
    for k in (1, 2):
        classes = list(range(5 * k - 5, 5 * k))
        assert f"exp {k}/2 classes {classes}: 60 steps" in lines
        steps = [x for x in lines if re.match(rf"exp {k}/2: step [\d,]+/60, loss [\d.]+, .* ETA ", x)]
        assert [int(re.search(r"step (\d+)/", x).group(1)) for x in steps] == [25, 50, 60]
        assert any(x.startswith(f"exp {k}/2 done in ") for x in lines)
    assert any(x.startswith("estimated training time: about ") for x in lines)
    assert f"run directory: {out}" in lines[-1]


def test_plain_lines_are_throttled_by_the_interval():
    clock = [0.0]
    buf = io.StringIO()
    r = Reporter(Console(file=buf), interval=10.0, clock=lambda: clock[0])
    assert r.plain
    r.before_training(200, 1)
    r.start_experience(0, 1, 200, (0, 1))
    for _ in range(8):  # 25 steps every 4 s: a line when 10 s have passed since the last one
        clock[0] += 4.0
        r.advance(25, 0.5)
    progress = [x for x in buf.getvalue().splitlines() if ": step " in x]
    assert [re.search(r"step (\d+)/", x).group(1) for x in progress] == ["75", "150"]
    assert progress[0].endswith("12 s elapsed, ETA 20 s")  # 125 steps left at 0.16 s a step
    est = [x for x in buf.getvalue().splitlines() if x.startswith("estimated")]
    assert est == ["estimated training time: about 32 s (160.0 ms a step)"]


def test_silent_reporter_prints_nothing_but_can_announce(capsys):
    buf = io.StringIO()
    r = Reporter(None, announce=buf)
    r.run_started("runs/learn/x")
    r.before_training(10, 1)
    r.start_experience(0, 1, 10, (0,))
    r.advance(10, None)
    r.end_experience([1.0], 1)
    assert buf.getvalue() == "run directory: runs/learn/x\n"
    Reporter(None).run_started("somewhere")  # library use: nothing anywhere
    assert capsys.readouterr() == ("", "")


def test_device_profile_name_points_to_the_right_option(tmp_path):
    result = CliRunner().invoke(app, ["learn", "--device", "raspberry-pi-4", "-q",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "device profile" in result.stderr and "--device takes auto | cpu | cuda" in result.stderr
    assert "--device-profile raspberry-pi-4" in result.stderr
    other = CliRunner().invoke(app, ["learn", "--device", "tpu", "-q"])
    assert other.exit_code == 2 and "unknown device 'tpu'" in other.stderr
    assert not (tmp_path / "r").exists()

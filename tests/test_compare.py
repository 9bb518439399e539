"""``edgelll compare``: a table of runs from their config.json and metrics.json, curves in one
PNG, one line and exit code 2 for a bad directory, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgelll.cli.main import app
from edgelll.compare import compare_runs, plot_curves

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(path, acc_matrix, strategies=("replay",), memory=None, complete=True, **cfg):
    path.mkdir(parents=True)
    config = {"data": "digits", "stream": "split", "scenario": "class", "model": "mlp",
              "model_args": {"hidden": [64]}, "strategies": list(strategies), "memory": memory,
              "epochs": 10, "steps": None, "batch_size": 32, "optimizer": "adam", **cfg}
    last = acc_matrix[-1]
    k = len(acc_matrix)
    metrics = {"acc_matrix": acc_matrix, "acc": sum(last[:k]) / k, "bwt": -0.125,
               "forgetting": 0.25, "acc_curve": [sum(r[: i + 1]) / (i + 1) for i, r in enumerate(acc_matrix)],
               "seconds": 12.34, "memory_bytes": {"total": 3 * 2**20}, "complete": complete}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


@pytest.fixture
def runs(tmp_path):
    a = fake_run(tmp_path / "a", [[1.0, 0.0], [0.5, 0.75]], memory=512 * 1024)
    b = fake_run(tmp_path / "b", [[0.9, 0.0]], strategies=("naive", "ewc"), complete=False, steps=100)
    return a, b


def test_rows_hold_what_sets_runs_apart(runs):
    a, b = runs
    first, second = compare_runs([a, b])
    assert first["strategies"] == "replay" and second["strategies"] == "naive+ewc"
    assert first["budget"] == "512.00 KiB" and second["budget"] == "none"
    assert first["model"] == "mlp(hidden=64)"
    assert first["training"] == "10 epochs, batch 32, adam" and second["training"].startswith("100 steps")
    assert first["ACC"] == "62.50%" and second["ACC"] == "90.00% (1/2 exp)"
    assert first["BWT"] == "-12.50%" and first["forgetting"] == "25.00%"
    assert first["state (peak)"] == "3.00 MiB" and first["time"] == "12.3 s"


def test_cli_prints_table_and_plot(runs, tmp_path):
    a, b = runs
    out = tmp_path / "curves.png"
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["compare", str(a), str(b), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert "62.50%" in result.stdout and "naive+ewc" in result.stdout
    assert out.read_bytes()[:8] == PNG
    again = CliRunner().invoke(app, ["compare", str(a), "--plot", str(out)])
    assert again.exit_code == 2 and "exists" in again.stderr  # never overwritten


def _no_metrics(p):
    (p / "c").mkdir()
    (p / "c" / "config.json").write_text("{}")
    return p / "c"


def _bad_json(p):
    fake_run(p / "d", [[1.0]])
    (p / "d" / "metrics.json").write_text("{oops")
    return p / "d"


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing", "is not a directory"),
    (lambda p: p, "no config.json"),
    (_no_metrics, "no metrics.json"),
    (_bad_json, "cannot read"),
])
def test_bad_directories_are_one_line(tmp_path, runs, make, fragment):
    bad = make(tmp_path)
    result = CliRunner().invoke(app, ["compare", str(runs[0]), str(bad), "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr
    assert result.stdout == "" and not (tmp_path / "p.png").exists()


def test_plot_refuses_other_formats(runs, tmp_path):
    from edgelll.errors import ConfigError
    with pytest.raises(ConfigError, match=".png"):
        plot_curves([runs[0]], tmp_path / "x.jpg")


def test_compare_a_real_run_without_importing_torch(tmp_path):
    import edgelll
    out = tmp_path / "real"
    cfg = edgelll.resolve({"strategies": ["naive"], "steps": 2, "tasks": 2, "device": "cpu"})
    edgelll.learn(cfg, run_dir=out)
    code = ("import sys\nfrom edgelll.cli.main import main\n"
            f"sys.argv = ['edgelll', 'compare', {str(out)!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={"COLUMNS": "250", "PATH": ""})
    assert p.returncode == 0, p.stderr
    assert "naive" in p.stdout and p.stdout.strip().endswith("False")

"""The benchmarks find their data through --data or EDGELLL_DATA, and say in one line when it is
not there (issue #8). Only the refusals run here: the benchmarks themselves take minutes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, data_env: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGELLL_DATA"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # edgelll
    if data_env is not None:
        env["EDGELLL_DATA"] = data_env
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_published_without_a_data_folder_names_the_option_and_the_variable(tmp_path):
    proc = bench("published.py", "--table", "split-class")
    one_error_line(proc, "--data DIR", "EDGELLL_DATA", "mnist.npz")


def test_published_names_the_missing_file_in_the_given_folder(tmp_path):
    proc = bench("published.py", "--table", "split-class", "--data", str(tmp_path / "nowhere"))
    one_error_line(proc, str(tmp_path / "nowhere" / "mnist.npz"))


def test_published_reads_the_folder_from_edgelll_data(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"")  # present: only Fashion-MNIST is missing
    proc = bench("published.py", "--table", "split-class,fashion-class", data_env=str(tmp_path))
    one_error_line(proc, str(tmp_path / "fashion_mnist.npz"))


def test_published_report_needs_no_data(tmp_path):
    proc = bench("published.py", "--table", "split-class", "--report")
    assert proc.returncode == 0, proc.stderr
    assert "### split-class" in proc.stdout


@pytest.mark.parametrize("spec", ["mnist={}", "{}"])
def test_generative_defaults_names_a_missing_path(tmp_path, spec):
    missing = tmp_path / "absent.npz"
    proc = bench("generative_defaults.py", "--data", spec.format(missing), "--seeds", "0")
    one_error_line(proc, str(missing))
    assert proc.stdout == ""  # refused before the table starts


def test_growth_names_the_folder_or_the_missing_file(tmp_path):
    one_error_line(bench("growth.py"), "--data-dir", "EDGELLL_DATA")
    one_error_line(bench("growth.py", "--data-dir", str(tmp_path)), str(tmp_path / "mnist.npz"))
    one_error_line(bench("growth.py", "--data-dir", str(tmp_path), "--sets", "cifar"), "cifar")
    for bad in ("400", "0", "wide", ""):  # the student is 400 wide: a teacher must be narrower
        one_error_line(bench("growth.py", "--data-dir", str(tmp_path), "--teachers", bad),
                       "--teachers", "100,200")
    one_error_line(bench("growth.py", "--data-dir", str(tmp_path), "--parts", "plots"),
                   "--parts", "runs,steps")


def test_fscil_names_the_folder_the_missing_file_or_the_bad_setting(tmp_path):
    one_error_line(bench("fscil.py"), "--data-dir", "EDGELLL_DATA", "omniglot28.npz")
    one_error_line(bench("fscil.py", "--data-dir", str(tmp_path)), str(tmp_path / "mnist.npz"))
    one_error_line(bench("fscil.py", "--data-dir", str(tmp_path), "--sets", "cifar"), "cifar")
    one_error_line(bench("fscil.py", "--data-dir", str(tmp_path), "--seeds", "0"), "--seeds")
    (tmp_path / "mnist.npz").write_bytes(b"")  # present: only Omniglot is missing
    proc = bench("fscil.py", "--sets", "mnist,omniglot-long", data_env=str(tmp_path))
    one_error_line(proc, str(tmp_path / "omniglot28.npz"))
    assert proc.stdout == ""  # refused before any set ran


def test_fscil_refuses_an_unreadable_data_file_in_one_line(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not an npz")
    out = tmp_path / "out.json"
    proc = bench("fscil.py", "--data-dir", str(tmp_path), "--sets", "mnist", "--json", str(out),
                 "--md", str(tmp_path / "out.md"))
    one_error_line(proc, "mnist.npz")
    assert not out.exists()  # refused before anything was written

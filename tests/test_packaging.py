"""pyproject.toml: what setuptools warned about (a licence table, a data folder not listed as a
package), and the supported Python the README states."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    req = next(r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(re.search(r">=\s*(\d+)", req).group(1)) >= 77  # SPDX strings need setuptools 77


def test_every_listed_package_exists_and_every_package_folder_is_listed():
    tool = PYPROJECT["tool"]["setuptools"]
    dirs = tool["package-dir"]

    def folder(package: str) -> Path:
        for prefix in sorted(dirs, key=len, reverse=True):
            if package == prefix or package.startswith(prefix + "."):
                rest = package[len(prefix):].lstrip(".").replace(".", "/")
                return ROOT / dirs[prefix] / rest
        return ROOT / package.replace(".", "/")

    listed = set(tool["packages"])
    for package in listed:
        assert folder(package).is_dir(), f"{package} is listed but {folder(package)} does not exist"
    for prefix in dirs:
        for sub in folder(prefix).rglob("*"):
            if sub.is_dir() and not sub.name.startswith((".", "__")) and any(sub.iterdir()):
                name = prefix + "." + ".".join(sub.relative_to(folder(prefix)).parts)
                assert name in listed, f"{sub} ships files but {name} is not in packages"


def test_readme_states_the_python_pyproject_requires():
    required = PYPROJECT["project"]["requires-python"]
    assert required == ">=3.11"  # tomllib, and the only Python with torch wheels here
    assert "Python 3.11+" in (ROOT / "README.md").read_text()


def test_training_commands_on_a_device_install_say_which_extra_to_install(tmp_path):
    """A base install (numpy, onnxruntime: a device) has no torch; `edgelll learn` there is one
    line naming the training extra, not a traceback. torch is blocked by a meta path finder."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'matplotlib', 'onnx'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "sys.argv = ['edgelll', 'learn', '--epochs', '1', '--plot', 'none']\n"
            "from edgelll.cli.main import main\n"
            "main()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert not (tmp_path / "runs").exists()
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines == ["error: this command needs PyTorch, which this install lacks (a device "
                     "install has only the runtime); install the training extra: "
                     "pip install 'edgelll[train]'"], p.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`edgelll ... | head -1`: the write that meets the closed pipe ends the command with
    SIGPIPE's status and nothing on stderr (no 'unexpected BrokenPipeError' line)."""
    import subprocess
    import sys

    code = ("import sys, typer\n"
            "from edgelll.cli.common import handle_errors\n"
            "@handle_errors\n"
            "def command():\n"
            "    for i in range(200000):\n"
            "        print('line', i)\n"
            "try:\n"
            "    command()\n"
            "except typer.Exit as exc:\n"
            "    sys.exit(exc.exit_code)\n")
    p = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, executable="/bin/bash")
    assert p.stdout == "line 0\n"
    assert p.stderr == "", p.stderr
    q = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1; exit ${{PIPESTATUS[0]}}",
                       shell=True, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       executable="/bin/bash")
    assert q.returncode == 141, q.stderr

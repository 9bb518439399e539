"""Every code block in README.md works as written (issue #8).

- ```python blocks run in a fresh namespace, in a temporary folder; a block followed by a
  "prints" block must print lines of the same shape (the same text with every number as ``#``).
- ```sh blocks: every option of an ``edgelll`` command or a ``python benchmarks/X.py`` or
  ``python examples/X.py`` line is one that the command's ``--help`` lists (``pip`` lines are
  not run); every ``make TARGET`` is a Makefile target; and every
  ``edgelll`` command runs, in a folder shared by its block: on the embedded digits as written, or
  on tiny MNIST-shaped files that the test puts at the README's ``~/data`` paths (HOME points at
  the temporary folder), for one epoch or two steps.
- every ``--option`` named anywhere in the README exists in some command's ``--help``.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgelll.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
NUMBER = re.compile(r"[-+]?\d[\d.,]*")
SHELLS = ("sh", "bash", "shell", "console")


def blocks() -> list[tuple[int, str, str, str]]:
    """``(line, language, code, text after the block up to the next one)`` for each fenced block."""
    text = README.read_text()
    found = list(FENCE.finditer(text))
    out = []
    for i, m in enumerate(found):
        indent = len(m.group(1))
        code = "".join(line[indent:] for line in m.group(3).splitlines(keepends=True))
        after = text[m.end():found[i + 1].start()] if i + 1 < len(found) else ""
        out.append((text.count("\n", 0, m.start()) + 1, m.group(2).lower(), code, after))
    return out


def python_blocks() -> list[tuple[int, str, str | None]]:
    """Each python block with the plain block that shows its output, when the text says so."""
    found = blocks()
    out = []
    for i, (line, lang, code, after) in enumerate(found):
        if lang != "python":
            continue
        shown = None
        if i + 1 < len(found) and found[i + 1][1] == "" and after.strip().rstrip(":") == "prints":
            shown = found[i + 1][2]
        out.append((line, code, shown))
    return out


def commands(code: str) -> list[list[str]]:
    """The command lines of a shell block as argument lists (comments, continuations handled)."""
    joined = re.sub(r"\\\n", " ", code)
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def shell_commands() -> list[tuple[int, list[list[str]]]]:
    return [(line, commands(code)) for line, lang, code, _ in blocks() if lang in SHELLS]


def program(argv: list[str]) -> tuple[str, list[str]]:
    """``(what runs, its arguments)``: ``edgelll SUB``, ``benchmarks/X.py``, ``make`` or ``export``;
    leading ``NAME=VALUE`` assignments are the environment, not the command."""
    while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        argv = argv[1:]
    head, rest = argv[0], argv[1:]
    if head == "edgelll":
        sub = rest[0] if rest and not rest[0].startswith("-") else ""
        return f"edgelll {sub}".strip(), rest[1:] if sub else rest
    if re.fullmatch(r"python3?", head) and rest and rest[0].startswith(("benchmarks/", "examples/")):
        return rest[0], rest[1:]
    if head in ("make", "export", "pip"):
        return head, rest
    raise AssertionError(f"README runs {head!r}, which test_readme.py does not know how to check")


def options(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", a)]


_HELP: dict[str, str] = {}


def help_text(prog: str) -> str:
    """The ``--help`` of ``edgelll SUB`` (in process, wide enough not to wrap) or of a benchmark."""
    if prog not in _HELP:
        if prog.startswith("edgelll"):
            runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})
            result = runner.invoke(app, [*prog.split()[1:], "--help"])
            assert result.exit_code == 0, f"{prog} --help: exit {result.exit_code}\n{result.output}"
            _HELP[prog] = ANSI.sub("", result.output)
        else:
            proc = subprocess.run([sys.executable, prog, "--help"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode == 0, f"{prog} --help: exit {proc.returncode}\n{proc.stderr}"
            _HELP[prog] = proc.stdout
    return _HELP[prog]


def listed(option: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


# -- tiny stand-ins for the data sets at the README's paths ------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def stage_data(home: Path) -> None:
    """``~/data/{mnist,fashion_mnist}/`` with the four official IDX names, and their ``.npz``:
    10 classes of 28x28 uint8 images, a few per class, each class a brighter blob."""
    rng = np.random.default_rng(0)
    for stem in ("mnist", "fashion_mnist"):
        arrays = {}
        for split, per in (("train", 8), ("test", 3)):
            y = np.repeat(np.arange(10), per).astype(np.uint8)
            x = rng.integers(0, 60, (len(y), 28, 28))
            for c in range(10):
                x[y == c, 2 * c:2 * c + 8, 4:24] += 180
            arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y
        folder = home / "data" / stem
        folder.mkdir(parents=True)
        for prefix, split in (("train", "train"), ("t10k", "test")):
            write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", arrays[f"x_{split}"])
            write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", arrays[f"y_{split}"])
        np.savez(home / "data" / f"{stem}.npz", **arrays)


@pytest.fixture
def home(tmp_path, monkeypatch):
    # One thread: these models are tiny, and two threads on a busy 2-core machine spin against
    # each other (a 1-epoch digits run took 5x longer). conftest resets the count for each test.
    torch.set_num_threads(1)
    home = tmp_path / "home"
    stage_data(home)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


# -- the tests ---------------------------------------------------------------------------------

def test_readme_has_the_blocks_this_file_checks():
    # Guards the extraction itself: a broken regex would make every other test here vacuous.
    langs = [lang for _, lang, _, _ in blocks()]
    assert langs.count("python") >= 2 and sum(lang in SHELLS for lang in langs) >= 5
    edgelll_lines = [c for _, cmds in shell_commands() for c in cmds if c[0] == "edgelll"]
    assert len(edgelll_lines) >= 8
    assert any(shown for _, _, shown in python_blocks())


def test_readme_names_no_development_machine_path():
    text = README.read_text()
    assert "shared/" not in text and "REFERENCES.md" not in text


@pytest.mark.parametrize("line, code, shown", python_blocks(),
                         ids=[f"line{b[0]}" for b in python_blocks()])
def test_python_block_runs(home, capsys, line, code, shown):
    # A fresh namespace, in a temporary folder, with HOME there: what a reader pasting the block
    # into a new interpreter gets, without paying for another interpreter's torch import.
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    if shown is not None:
        got = [NUMBER.sub("#", s).rstrip() for s in printed.splitlines()]
        want = [NUMBER.sub("#", s).rstrip() for s in shown.splitlines()]
        assert got == want, f"README.md:{line}: the output shown is not what the block prints"


def test_shell_block_options_exist():
    makefile = (ROOT / "Makefile").read_text()
    for line, cmds in shell_commands():
        for argv in cmds:
            prog, args = program(argv)
            if prog in ("export", "pip"):
                continue
            if prog == "make":
                for target in args:
                    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), (
                        f"README.md:{line}: make {target}: no such Makefile target")
                continue
            text = help_text(prog)
            for opt in options(args):
                assert listed(opt, text), f"README.md:{line}: {prog} has no option {opt}"


def test_every_option_named_in_the_readme_exists():
    known = " ".join(help_text(p) for p in {program(a)[0] for _, cmds in shell_commands()
                                             for a in cmds} - {"make", "export", "pip"})
    known += help_text("edgelll") + help_text("edgelll learn") + help_text("edgelll list")
    named = set(OPTION.findall(README.read_text())) - {"-"}
    missing = sorted(o for o in named if o.startswith("--") and not listed(o, known))
    assert not missing, f"the README names options no command has: {missing}"


def runnable(argv: list[str]) -> list[str]:
    """An ``edgelll`` command made quick: one epoch, or two steps where it counts steps; quiet."""
    args, out, i = argv[1:], [], 0
    if args[:1] != ["learn"] or "--resume" in args:
        return args + (["--quiet"] if "--resume" in args else [])
    while i < len(args):
        if args[i] in ("--epochs", "--steps"):
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out + (["--steps", "2"] if "--steps" in args else ["--epochs", "1"]) + ["--quiet"]


RUNNABLE = [b for b in shell_commands() if any(c[0] == "edgelll" for c in b[1])]


@pytest.mark.parametrize("line, cmds", RUNNABLE, ids=[f"line{b[0]}" for b in RUNNABLE])
def test_shell_block_edgelll_commands_run(home, monkeypatch, line, cmds):
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    for argv in cmds:
        if argv[0] == "export":
            name, _, value = argv[1].partition("=")
            monkeypatch.setenv(name, os.path.expanduser(value))
            continue
        if re.fullmatch(r"python3?", argv[0]) and argv[1].startswith("examples/"):
            # An example app, as a reader runs it after the block's commands
            proc = subprocess.run([sys.executable, str(ROOT / argv[1]), *argv[2:]],
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"README.md:{line}: {' '.join(argv)}\n{proc.stderr}"
            continue
        if argv[0] != "edgelll":
            continue
        # The shell expands a glob such as runs/learn/* into the runs the block made.
        args = [m for a in runnable(argv) for m in (sorted(glob.glob(a)) if "*" in a else [a])]
        before = len(list(Path.cwd().rglob("metrics.json")))
        result = runner.invoke(app, args)
        if "--resume" in args:  # the README's own earlier run: complete, so resuming succeeds
            assert result.exit_code == 0, (
                f"README.md:{line}: edgelll {' '.join(args)}: exit {result.exit_code}\n"
                f"{result.output[-2000:]}")
            continue
        assert result.exit_code == 0, (
            f"README.md:{line}: edgelll {' '.join(args)}: exit {result.exit_code}\n"
            f"{result.output[-2000:]}")
        if args[0] == "learn":
            assert len(list(Path.cwd().rglob("metrics.json"))) == before + 1, (
                f"README.md:{line}: edgelll {' '.join(args)} wrote no run directory")

"""What every command shares: one-line errors with exit code 2, and ``--debug`` for tracebacks.

Without ``--debug``, stderr carries edgelll's own lines only: other libraries' warnings (torch's
among them) are silenced, and an exception that escaped validation still ends as one line.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from pathlib import Path

import typer
from typer.exceptions import TyperException

from edgelll.errors import EdgelllError, EdgelllWarning

DEBUG = {"on": False}
RUN = {"dir": None}  # the run directory of the command running now, for the Ctrl-C message


def one_line(message: str) -> str:
    """``message`` on a single line: line breaks (e.g. inside a user's path) are shown escaped."""
    return message.strip().replace("\r", "\\r").replace("\n", "\\n")


def fail(message: str, code: int = 2):
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def _out_of_memory(exc: BaseException) -> bool:
    """A host ``MemoryError``, torch's ``OutOfMemoryError``, or torch's CPU allocator refusing
    (a plain ``RuntimeError`` that says so)."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


@contextlib.contextmanager
def _own_warnings_only(debug: bool):
    """edgelll's warnings as one ``warning:`` line each; every other warning hidden (``--debug``
    leaves Python's defaults)."""
    if debug:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", EdgelllWarning)  # inserted last, so matched first

        def show(message, category, filename, lineno, file=None, line=None):
            typer.echo(f"warning: {one_line(str(message))}", err=True)

        warnings.showwarning = show
        yield


def _interrupted() -> str:
    run_dir = RUN["dir"]
    if run_dir is not None and (Path(run_dir) / "config.json").is_file():
        return (f"interrupted; completed experiences are checkpointed, continue with "
                f"--resume {run_dir}")
    return "interrupted before the run began; nothing was written to resume"


# Packages of the training install (pip install 'edgelll[train]') that a device install lacks.
TRAIN_ONLY = {"torch": "PyTorch", "matplotlib": "matplotlib", "onnx": "the onnx package"}


def _missing_training_package(exc: BaseException) -> str | None:
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and name in TRAIN_ONLY:
        return (f"this command needs {TRAIN_ONLY[name]}, which this install lacks (a device "
                f"install has only the runtime); install the training extra: "
                f"pip install 'edgelll[train]'")
    return None


def _last_resort(exc: Exception) -> str:
    """One line for an exception no check foresaw, naming the path when the OS gave one."""
    if (missing := _missing_training_package(exc)) is not None:
        return missing
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = " ".join(str(exc).split())[:200] or "no message"
    return f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the traceback)"


def handle_errors(fn):
    """Turn a library error into one line on stderr and exit code 2 (``--debug`` re-raises)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = DEBUG["on"] or bool(kwargs.get("debug"))
        try:
            with _own_warnings_only(debug):
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # typer's own exits and usage errors (typer.Exit is a RuntimeError)
        except EdgelllError as exc:
            if debug:
                raise
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo(_interrupted(), err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader went away (`edgelll ... | head -1`): stop quietly, as a Unix tool killed
            # by SIGPIPE does, and keep Python from complaining about stdout again at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
            if debug:
                raise
            if _out_of_memory(exc):
                fail("out of memory; lower --batch-size, use a smaller --model or set --memory")
            fail(_last_resort(exc))
    return wrapper


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()

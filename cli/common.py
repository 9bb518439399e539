"""What every command shares: one-line errors with exit code 2, and ``--debug`` for tracebacks."""

from __future__ import annotations

import functools
import sys

import typer

from edgelll.errors import EdgelllError

DEBUG = {"on": False}


def one_line(message: str) -> str:
    """``message`` on a single line: line breaks (e.g. inside a user's path) are shown escaped."""
    return message.strip().replace("\r", "\\r").replace("\n", "\\n")


def fail(message: str, code: int = 2):
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def _out_of_memory(exc: BaseException) -> bool:
    """A host ``MemoryError`` or torch's (CUDA) ``OutOfMemoryError``, a ``RuntimeError`` subclass."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(exc, oom)


def handle_errors(fn):
    """Turn a library error into one line on stderr and exit code 2 (``--debug`` re-raises)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgelllError as exc:
            if DEBUG["on"] or kwargs.get("debug"):
                raise
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted; completed experiences are checkpointed, continue with "
                       "--resume RUN_DIR", err=True)
            raise typer.Exit(130) from None
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc) or DEBUG["on"] or kwargs.get("debug"):
                raise
            fail("out of memory; lower --batch-size, use a smaller --model or set --memory")
    return wrapper


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()

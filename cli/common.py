"""What every command shares: one-line errors with exit code 2, and ``--debug`` for tracebacks."""

from __future__ import annotations

import functools
import sys

import typer

from edgelll.errors import EdgelllError

DEBUG = {"on": False}


def fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


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
        except MemoryError:
            if DEBUG["on"] or kwargs.get("debug"):
                raise
            fail("out of memory; lower --batch-size, use a smaller --model or set --memory")
    return wrapper


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()

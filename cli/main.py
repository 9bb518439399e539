"""The ``edgelll`` Typer app: ``learn`` and ``list``."""

from __future__ import annotations

from typing import Annotated

import typer

from edgelll import __version__

from .common import DEBUG
from .learn import learn_command
from .listing import list_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Incremental (lifelong) learning on edge devices.")
app.command("learn")(learn_command)
app.command("list")(list_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgelll {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False,
) -> None:
    DEBUG["on"] = debug


def main() -> None:
    app()


if __name__ == "__main__":
    main()

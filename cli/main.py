"""The ``edgelll`` Typer app: ``learn``, ``list`` and ``compare``."""

from __future__ import annotations

from typing import Annotated

import typer

from edgelll import __version__

from .common import DEBUG
from .compare import compare_command
from .export import export_command
from .learn import learn_command
from .listing import list_command
from .profile import profile_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Incremental (lifelong) learning on edge devices.")
app.command("learn")(learn_command)
app.command("list")(list_command)
app.command("compare")(compare_command)
app.command("profile")(profile_command)
app.command("export")(export_command)


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
    """Entry point: Typer's own usage errors become one ``error:`` line and exit 2 as well."""
    import sys

    from typer.exceptions import TyperException

    if len(sys.argv) == 1:
        return app()  # no arguments: the help text
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised inside
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:
        if DEBUG["on"] or "--debug" in sys.argv:
            raise
        message = " ".join(exc.format_message().split())
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2) or 2)


if __name__ == "__main__":
    main()

"""``edgelll compare RUN_DIR...``: a table of runs, and with ``--plot`` their accuracy curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import handle_errors


@handle_errors
def compare_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories (e.g. runs/learn/*)", show_default=False)],
    plot: Annotated[Optional[Path], typer.Option(help="also write the runs' accuracy curves to this new .png file")] = None,
) -> None:
    """Compare finished (or partly finished) runs side by side."""
    from edgelll.compare import COLUMNS, compare_runs, plot_curves

    rows = compare_runs(run_dirs)  # every directory checked before anything is printed
    if plot is not None:
        plot_curves(run_dirs, plot)
    table = Table(title="edgelll compare", title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="right" if name in ("ACC", "BWT", "forgetting",
                                                           "state (peak)", "time") else "left")
    for row in rows:
        table.add_row(*(row[name] for name in COLUMNS))
    Console().print(table)
    if plot is not None:
        Console().print(f"accuracy curves: {plot}")

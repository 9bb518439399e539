"""``edgelll list``: the strategies, models, data sets and device profiles available."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from edgelll.errors import ConfigError, unknown_name

from .common import handle_errors

KINDS = ("strategies", "models", "datasets", "devices")


def _rows(kind: str) -> dict[str, str]:
    if kind == "strategies":
        from edgelll.strategies import STRATEGIES
        return {name: cls.description for name, cls in STRATEGIES.items()}
    if kind == "models":
        from edgelll.models import list_models
        return list_models()
    if kind == "datasets":
        from edgelll.data import DATASETS
        return dict(DATASETS)
    from edgelll.devices_catalog import list_devices
    return {name: p.get("description", "") for name, p in list_devices().items()}


@handle_errors
def list_command(
    kind: Annotated[Optional[str], typer.Argument(help="strategies | models | datasets | devices (all when omitted)")] = None,
) -> None:
    """List what edgelll offers."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(unknown_name("list", kind, KINDS))
    console = Console()
    for k in [kind] if kind else KINDS:
        table = Table(title=k, show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for name, desc in _rows(k).items():
            table.add_row(name, desc)
        console.print(table)

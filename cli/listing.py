"""``edgelll list``: the strategies, models, data sets and device profiles available.

``list strategies -v`` adds each strategy's parameters, ``list strategy NAME`` shows one. Only the
strategies and models need their registries, which import torch; ``list datasets`` and
``list devices`` answer without it.
"""

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
    return {name: p.description for name, p in list_devices().items()}


def _device_table() -> Table:
    """Every shipped profile with the figures ``--device-profile`` applies."""
    from edgelll.devices_catalog import list_devices

    profiles = list(list_devices().values())
    table = Table(title="devices: cores/threads, learner memory, batch-1 latency target, "
                  "ONNX Runtime providers (none: budgets only)", title_justify="left",
                  box=None, pad_edge=False, header_style="bold", padding=(0, 1))
    rows = [p.row() for p in profiles]
    for i, column in enumerate(rows[0] if rows else {"name": ""}):
        width = max(len(r[column]) for r in rows)
        table.add_column(column, style="bold" if i == 0 else None, min_width=width)
    for row in rows:
        table.add_row(*row.values())
    return table


def _parameter_table(name: str, description: str) -> Table | str:
    from edgelll.describe import strategy_parameters

    rows = strategy_parameters(name)
    if not rows:
        return f"[bold]{name}[/bold]: {description} (no parameters)"
    table = Table(title=f"{name}: {description}", title_justify="left")
    table.add_column(f"--set {name}.PARAM", style="bold")
    table.add_column("default")
    table.add_column("meaning")
    for row in rows:
        table.add_row(row["name"], row["default"], row["help"])
    return table


def _show_strategies(console: Console, only: str | None) -> None:
    from edgelll.strategies import STRATEGIES

    if only is not None and only not in STRATEGIES:
        raise ConfigError(unknown_name("strategy", only, STRATEGIES))
    for name, cls in STRATEGIES.items():
        if only in (None, name):
            console.print(_parameter_table(name, cls.description))


@handle_errors
def list_command(
    kind: Annotated[Optional[str], typer.Argument(help="strategies | models | datasets | devices (all when omitted), or `strategy NAME`")] = None,
    name: Annotated[Optional[str], typer.Argument(help="with `strategy`: the strategy to describe")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="with strategies: each one's parameters, defaults and meaning")] = False,
) -> None:
    """List what edgelll offers."""
    console = Console()
    if kind == "strategy":
        if name is None:
            raise ConfigError("list strategy takes a name, e.g. `edgelll list strategy replay` "
                              "(or `edgelll list strategies -v` for all of them)")
        _show_strategies(console, name)
        return
    if name is not None:
        raise ConfigError(f"list {kind} takes no name; only `list strategy NAME` does")
    if kind is not None and kind not in KINDS:
        raise ConfigError(unknown_name("list", kind, (*KINDS, "strategy")))
    for k in [kind] if kind else KINDS:
        if k == "strategies" and verbose:
            _show_strategies(console, None)
            continue
        if k == "devices":
            console.print(_device_table())
            continue
        table = Table(title=k, show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for item, desc in _rows(k).items():
            table.add_row(item, desc)
        console.print(table)
    if kind in (None, "strategies") and not verbose:
        console.print("parameters: `edgelll list strategy NAME` or `edgelll list strategies -v`")

"""``edgelll profile TARGET...``: parse options, call :func:`edgelll.profiler.profile_targets`,
show the table and write profile.json, profile.csv and pareto.png."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgelll.errors import ConfigError

from .common import handle_errors


def _batches(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--batch takes sizes like 1,8,32; got {text!r}") from None
    if not sizes or 1 not in sizes or min(sizes) < 1:
        raise ConfigError(f"--batch takes sizes of at least 1 including 1 (the latency the front "
                          f"and the target use), like 1,8,32; got {text!r}")
    return tuple(dict.fromkeys(sizes))


class _Progress:
    """A rich progress bar on a terminal, plain lines (every few seconds at most) in a log."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.bar, self.task, self.last = tty, None, None, 0.0

    def __enter__(self):
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"),
                                TimeElapsedColumn(), transient=True)
            self.bar.__enter__()
        return self

    def __call__(self, i: int, n: int, what: str) -> None:
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task(what, total=n)
            self.bar.update(self.task, completed=i, total=n, description=what)
        elif time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            print(f"profiling {i + 1}/{n} {what}", flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _print_table(report: dict) -> None:
    """One column per target (a few targets fit 80 columns), one row per figure."""
    from rich.console import Console
    from rich.table import Table

    from edgelll.profiler_output import table_rows

    head, rows = table_rows(report)
    table = Table(title=f"profile: {report['threads']} thread(s), "
                        f"{', '.join(report['providers'])}", title_justify="left")
    table.add_column("", style="bold")
    for row in rows:
        table.add_column(row[0], justify="right", overflow="fold")
    for i, figure in enumerate(head[1:], start=1):
        table.add_row(figure, *(row[i] for row in rows))
    Console().print(table)


@handle_errors
def profile_command(
    targets: Annotated[list[Path], typer.Argument(help="run directories (profiled through their export, made if missing) and .onnx files", show_default=False)],
    device_profile: Annotated[Optional[str], typer.Option(help="apply a device profile's threads and providers and check its latency target (edgelll list devices, or a .toml file)")] = None,
    runs: Annotated[int, typer.Option(help="timed calls per batch size, after warm-up")] = 1000,
    seconds: Annotated[Optional[float], typer.Option(help="time each batch size for this many seconds instead of --runs")] = None,
    batch: Annotated[str, typer.Option(help="batch sizes, comma-separated (must include 1)")] = "1,8,32",
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op (and torch) threads", show_default="the device profile's, else 1")] = None,
    out: Annotated[Optional[Path], typer.Option(help="folder for profile.json, profile.csv and pareto.png", show_default="runs/profile/<targets>")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace a different profile in --out")] = False,
    torch: Annotated[bool, typer.Option("--torch/--no-torch", help="time torch eager beside ONNX Runtime where torch is installed")] = True,
) -> None:
    """Latency, memory and on-device learning cost of exported models against their forgetting."""
    from edgelll.profiler import ProfileOptions, profile_targets
    from edgelll.profiler_output import check_out, choose_out, write_outputs

    opts = ProfileOptions(batches=_batches(batch), runs=runs, seconds=seconds, threads=threads,
                          device_profile=device_profile, torch=torch)
    if out is not None:  # refuse a folder it may not write before measuring anything
        check_out(out, [str(t) for t in targets], force)
    started = time.perf_counter_ns()
    with _Progress(sys.stdout.isatty()) as progress:
        report = profile_targets(targets, opts, progress=progress,
                                 echo=lambda line: typer.echo(line, err=True))
    folder = choose_out(report, out, force)
    report["seconds"] = (time.perf_counter_ns() - started) / 1e9
    notes = write_outputs(report, folder)
    _print_table(report)
    for e in report["targets"]:
        for note in e["notes"]:
            typer.echo(f"note: {e['label']}: {note}")
    for note in [*report["notes"], *notes]:
        typer.echo(f"note: {note}")
    dp = report["device_profile"]
    if dp is not None:
        verdicts = [e.get("meets_target") for e in report["targets"]]
        typer.echo(f"{dp['name']} latency target {dp['latency_target_ms']:g} ms at batch 1: "
                   f"{sum(v is True for v in verdicts)}/{len(verdicts)} targets pass on this "
                   f"host with its {report['threads']} thread(s) (run on the board itself for "
                   f"its own figures)")
    typer.echo(f"wrote {folder}/profile.json, profile.csv"
               f"{', pareto.png' if not notes else ''} in {report['seconds']:.1f} s")

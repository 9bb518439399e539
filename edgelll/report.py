"""Terminal output for a run: a rich progress bar per experience and a summary table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import format_bytes


class Reporter:
    """Shows progress on a console; ``Reporter(None)`` stays silent."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task = None

    def start_experience(self, index: int, n_experiences: int, steps: int, classes) -> None:
        if self.console is None:
            return
        self._progress = Progress(
            TextColumn(f"exp {index + 1}/{n_experiences} classes {list(classes)}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
            console=self.console, transient=False)
        self._task = self._progress.add_task("train", total=steps, loss="-")
        self._progress.start()

    def advance(self, steps: int, loss: float | None = None) -> None:
        if self._progress is not None:
            fields = {} if loss is None else {"loss": f"{loss:.3f}"}
            self._progress.update(self._task, advance=steps, **fields)

    def end_experience(self, row: list[float], seen: int) -> None:
        if self._progress is None:
            return
        self._progress.stop()
        accs = " ".join(f"{a * 100:5.1f}" for a in row[:seen])
        self.console.print(f"  accuracy on experiences seen: {accs}")
        self._progress = None

    def message(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def summary(self, metrics: dict, memory: dict, run_dir) -> None:
        if self.console is None:
            return
        table = Table(title="edgelll learn: summary", show_header=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, label in (("acc", "final average accuracy (ACC)"), ("bwt", "backward transfer (BWT)"),
                           ("fwt", "forward transfer (FWT)"), ("forgetting", "average forgetting")):
            table.add_row(label, f"{metrics[key] * 100:+.2f}%" if key != "acc" else f"{metrics[key] * 100:.2f}%")
        table.add_row("wall time", f"{metrics['seconds']:.1f} s")
        table.add_row("learner state (peak)", format_bytes(memory["total"]))
        for name, value in memory["components"].items():
            table.add_row(f"  {name}", format_bytes(value))
        if memory.get("limit") is not None:
            table.add_row("memory budget", format_bytes(memory["limit"]))
        self.console.print(table)
        if run_dir is not None:
            self.console.print(f"run directory: {run_dir}")

"""Terminal output for a run: progress per experience, the run directory, and a summary table.

On a terminal, a rich progress bar per experience. When stdout is a pipe or a file (a log, CI),
progress bars print nothing useful, so plain lines go there instead: one when an experience starts
and ends, and one every ``interval`` seconds with the step count and an ETA. With ``-q`` only the
run directory is announced, as one line on stderr.
"""

from __future__ import annotations

import math
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from .config import format_bytes


def planned_steps(cfg, stream, start: int = 0) -> int:
    """Optimiser steps the experiences from ``start`` on will take under ``cfg``, as far as it is
    known before training (a strategy that adds rows, as joint training does, makes it more)."""
    sample = math.prod(stream.input_shape) * stream.dtype.itemsize
    total = 0
    for exp in stream.experiences[start:]:
        rows = exp.train_bytes // max(1, sample)
        steps = cfg.steps or cfg.epochs * math.ceil(rows / cfg.batch_size)
        total += steps if cfg.compute_steps is None else min(steps, cfg.compute_steps)
    return total


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Reporter:
    """Shows progress on ``console``; ``Reporter(None)`` stays silent (library use).

    ``announce``: where a silent reporter still writes the one line naming the run directory
    (the CLI's ``-q`` passes stderr). ``interval``: seconds between plain progress lines.
    """

    def __init__(self, console: Console | None, announce: TextIO | None = None,
                 interval: float = 5.0, clock=time.monotonic) -> None:
        self.console = console
        self.announce = announce
        self.interval = interval
        self.clock = clock
        self.plain = console is not None and not console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._exp: dict = {}
        self._planned = 0  # steps the whole run is expected to take (0: unknown)
        self._done = 0  # steps done by this process
        self._t0: float | None = None  # when this process started training
        self._mark: tuple[float, int] | None = None  # (time, steps) after the first advance
        self._estimated = False

    # -- the learner's calls ------------------------------------------------------------------
    def run_started(self, run_dir, resumed: bool = False) -> None:
        """Name the run directory as soon as it exists (also under ``-q``)."""
        if run_dir is None:
            return
        line = f"{'resuming' if resumed else 'run directory'}: {run_dir}"
        if self.console is not None:
            self._line(line)
        elif self.announce is not None:
            print(line, file=self.announce, flush=True)

    def before_training(self, steps: int, experiences: int) -> None:
        self._planned, self._t0 = steps, self.clock()
        if self.console is not None and steps:
            self._line(f"training: {experiences} experiences, about {steps:,} optimiser steps "
                       f"(--epochs or --steps shortens it)")

    def start_experience(self, index: int, n_experiences: int, steps: int, classes) -> None:
        if self.console is None:
            return
        shown = (list(classes) if len(classes) <= 12  # an FSCIL base session can hold hundreds
                 else f"[{', '.join(map(str, list(classes)[:5]))}, ... ({len(classes)} classes)]")
        label = f"exp {index + 1}/{n_experiences} classes {shown}"
        self._exp = {"label": f"exp {index + 1}/{n_experiences}", "steps": steps, "done": 0,
                     "start": self.clock(), "last": self.clock()}
        if self._t0 is None:
            self._t0 = self.clock()
        if self.plain:
            self._line(f"{label}: {steps:,} steps")
            return
        self._progress = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=False)
        self._task = self._progress.add_task("train", total=steps, loss="-")
        self._progress.start()

    def advance(self, steps: int, loss: float | None = None) -> None:
        if self.console is None:
            return
        self._done += steps
        self._exp["done"] = self._exp.get("done", 0) + steps
        if self._progress is not None:
            fields = {} if loss is None else {"loss": f"{loss:.3f}"}
            self._progress.update(self._task, advance=steps, **fields)
        now = self.clock()
        if self._mark is None:  # the first steps pay one-off costs (the optimizer's first use)
            self._mark = (now, self._done)
        elif not self._estimated:
            self._estimate(now)
        if self.plain and now - self._exp["last"] >= self.interval:
            self._exp["last"] = now
            self._plain_progress(now, loss)

    def end_experience(self, row: list[float], seen: int) -> None:
        if self.console is None:
            return
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        accs = " ".join(f"{a * 100:5.1f}" for a in row[:seen])
        if self.plain:
            took = self.clock() - self._exp.get("start", self.clock())
            left = self._run_left(self.clock())
            self._line(f"{self._exp.get('label', 'exp')} done in {format_seconds(took)}; accuracy "
                       f"(%) on experiences seen: {accs}"
                       + (f"; about {format_seconds(left)} left" if left else ""))
        else:
            self.console.print(f"  accuracy (%) on experiences seen: {accs}")

    def message(self, text: str) -> None:
        if self.console is not None:
            self._line(text)

    # -- helpers ------------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        if self.plain:  # plain text, flushed so that a log being followed sees it now
            self.console.file.write(text + "\n")
            self.console.file.flush()
        else:
            self.console.print(text)

    def _run_left(self, now: float) -> float | None:
        if not self._planned or not self._done or self._t0 is None:
            return None
        rate = (now - self._t0) / self._done
        return max(0.0, self._planned - self._done) * rate

    def _estimate(self, now: float) -> None:
        """Once, early: the whole run's training time at the pace since the first steps
        (strategies' own work between experiences, such as EWC's Fisher, comes on top)."""
        self._estimated = True
        t1, d1 = self._mark
        if self._planned <= self._done or self._done <= d1:
            return
        rate = (now - t1) / (self._done - d1)
        total = now - self._t0 + (self._planned - self._done) * rate
        self._line(f"estimated training time: about {format_seconds(total)} "
                   f"({rate * 1000:.1f} ms a step)")

    def _plain_progress(self, now: float, loss: float | None) -> None:
        e = self._exp
        rate = (now - e["start"]) / max(1, e["done"])
        eta = max(0, e["steps"] - e["done"]) * rate
        loss_text = "" if loss is None else f", loss {loss:.3f}"
        self._line(f"{e['label']}: step {e['done']:,}/{e['steps']:,}{loss_text}, "
                   f"{format_seconds(now - e['start'])} elapsed, ETA {format_seconds(eta)}")

    def summary(self, metrics: dict, memory: dict, run_dir) -> None:
        if self.console is None:
            return
        table = Table(title="edgelll learn: summary", show_header=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, label in (("acc", "final average accuracy (ACC)"), ("bwt", "backward transfer (BWT)"),
                           ("fwt", "forward transfer (FWT)"), ("forgetting", "average forgetting")):
            table.add_row(label, f"{metrics[key] * 100:+.2f}%" if key != "acc" else f"{metrics[key] * 100:.2f}%")
        if "fscil" in metrics:
            f = metrics["fscil"]
            table.add_row("FSCIL sessions: all seen", "  ".join(
                f"{a * 100:.1f}" for a in f["sessions"]["all"]) + "%")
            table.add_row("  base / new classes, last", f"{f['sessions']['base'][-1] * 100:.1f}% / "
                          + ("-" if f["sessions"]["new"][-1] is None
                             else f"{f['sessions']['new'][-1] * 100:.1f}%"))
            table.add_row("  first / last / average", f"{f['first'] * 100:.1f}% / "
                          f"{f['last'] * 100:.1f}% / {f['average'] * 100:.1f}%")
            table.add_row("  drop first to last", f"{f['drop'] * 100:.1f} points")
        shrink = (metrics.get("whiten") or {}).get("shrink")
        if shrink is not None:  # None until the first experience has fitted the map
            table.add_row("whitening shrinkage", f"{shrink:g}")
        table.add_row("wall time", f"{metrics['seconds']:.1f} s")
        table.add_row("learner state (peak)", format_bytes(memory["total"]))
        for name, value in memory["components"].items():
            table.add_row(f"  {name}", format_bytes(value))
        if memory.get("limit") is not None:
            table.add_row("memory budget", format_bytes(memory["limit"]))
        for name, value in metrics.get("resolved", {}).items():
            table.add_row(name, str(value))
        self.console.print(table)
        if run_dir is not None:
            self.console.print(f"run directory: {run_dir}")


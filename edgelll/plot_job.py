"""When a run's ``accuracy.png`` is drawn: now, by a detached process, or not at all.

Importing matplotlib and rendering the figure takes about 1 s of a 5 s Split MNIST run on 2 cores,
and nothing in the run's result (metrics, summary, checkpoints) depends on it. Three modes:

- ``"inline"``: drawn before :func:`edgelll.learn` returns. The library's default, so a Python
  caller finds a complete run directory and no process outlives its call.
- ``"background"``: a detached ``python -m edgelll.plot_job RUN_DIR TITLE`` draws it from the
  ``metrics.json`` the run has just written, so the run returns (and the CLI exits) without
  waiting. The CLI's default. ``RunResult.plot.wait()`` blocks until the file is there.
- ``"none"``: no plot.

Either way the PNG is written to a temporary file and renamed into place (``save_accuracy_plot``),
so a render that crashes or is killed leaves no torn ``accuracy.png``, only a ``.tmp`` file that
resuming the run removes; running this module again redraws the plot.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, EdgelllError, unknown_name

PLOT_MODES = ("inline", "background", "none")
PLOT_FILE = "accuracy.png"


class PlotError(EdgelllError):
    """The accuracy plot could not be drawn (the run's results themselves are complete)."""


def check_plot_mode(mode: str) -> str:
    if mode not in PLOT_MODES:
        raise ConfigError(unknown_name("plot mode", str(mode), PLOT_MODES))
    return mode


@dataclass
class PlotJob:
    """The plot of one run: already drawn (``process`` None) or being drawn by a child process."""

    path: Path
    process: subprocess.Popen | None = None

    def done(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def wait(self, timeout: float | None = None) -> Path:
        """Block until the plot is written and return its path; raise PlotError if drawing failed,
        TimeoutError if ``timeout`` seconds pass first."""
        if self.process is not None:
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"{self.path} not drawn within {timeout} s") from None
            if code != 0:
                raise PlotError(f"drawing {self.path} failed (exit {code}); run `python -m "
                                f"edgelll.plot_job {self.path.parent}` to draw it and see why")
        return self.path


def render(metrics: dict, path: Path, title: str) -> None:
    """Draw the accuracy plot of a run from its metrics; the one place both modes draw it."""
    from .plots import experience_labels, save_accuracy_plot  # matplotlib only when drawn

    acc, done = metrics["acc_matrix"], metrics.get("experiences", [])
    classes = [e.get("classes", []) for e in done]
    labels = experience_labels(classes) if acc and len(classes) == len(acc[0]) else None
    save_accuracy_plot(acc, path, title=title, labels=labels)


def draw_plot(run_dir: Path, metrics: dict, title: str, mode: str) -> PlotJob | None:
    """Draw ``run_dir/accuracy.png`` for ``metrics`` (already written to ``metrics.json``)."""
    path = Path(run_dir) / PLOT_FILE
    if check_plot_mode(mode) == "none":
        return None
    if mode == "inline":
        render(metrics, path, title)
        return PlotJob(path)
    # A new session: Ctrl-C in the terminal, or the run's own exit, does not stop the drawing.
    process = subprocess.Popen([sys.executable, "-m", "edgelll.plot_job", str(run_dir), title],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    return PlotJob(path, process)


def main(argv: list[str] | None = None) -> int:
    """``python -m edgelll.plot_job RUN_DIR [TITLE]``: (re)draw a run's accuracy plot."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m edgelll.plot_job RUN_DIR [TITLE]", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        render(metrics, run_dir / PLOT_FILE, args[1] if len(args) > 1 else "")
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot draw {run_dir / PLOT_FILE}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side by side: several run directories as one table, and their accuracy curves in one figure.

Reads only each run's ``config.json`` and ``metrics.json`` (never a checkpoint), so it imports
neither torch nor the strategies, and answers as fast as ``edgelll --version``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .config import format_bytes
from .errors import ConfigError

COLUMNS = ("run", "strategies", "data", "budget", "model", "training", "ACC", "BWT", "forgetting",
           "state (peak)", "time")


def _read(path: Path, what: str) -> dict:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path.parent} has no {what} yet; only a run that finished an "
                          f"experience can be compared") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} does not hold a table of values; is it an edgelll run?")
    return raw


def load_run(run_dir: str | os.PathLike[str]) -> dict:
    """One run's config and metrics; a missing or malformed run is one :class:`ConfigError`."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory; pass run directories such as "
                          f"runs/learn/replay-digits-split-class")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not an edgelll run directory (no config.json)")
    config = _read(path / "config.json", "config.json")
    metrics = _read(path / "metrics.json", "metrics.json")
    for key in ("acc", "bwt", "forgetting", "acc_curve", "acc_matrix"):
        if key not in metrics:
            raise ConfigError(f"{path / 'metrics.json'} lacks {key!r}; is it an edgelll run?")
    return {"dir": str(path), "config": config, "metrics": metrics}


def _model(config: dict) -> str:
    args = config.get("model_args") or {}
    inner = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                      for k, v in sorted(args.items()))
    return f"{config.get('model', '?')}({inner})" if inner else str(config.get("model", "?"))


def _training(config: dict) -> str:
    length = (f"{config['steps']} steps" if config.get("steps")
              else f"{config.get('epochs', '?')} epochs")
    return f"{length}, batch {config.get('batch_size', '?')}, {config.get('optimizer', '?')}"


def row(run: dict) -> dict[str, str]:
    """The table row of a loaded run, as text; an unfinished run says how far it got."""
    cfg, m = run["config"], run["metrics"]
    done, total = len(m["acc_matrix"]), len(m["acc_matrix"][0]) if m["acc_matrix"] else 0
    acc = f"{100 * m['acc']:.2f}%" + ("" if m.get("complete", done == total)
                                      else f" ({done}/{total} exp)")
    memory = cfg.get("memory")
    peak = (m.get("memory_bytes") or {}).get("total")
    seconds = m.get("seconds")
    return {"run": run["dir"], "strategies": "+".join(cfg.get("strategies", [])),
            "data": f"{cfg.get('data', '?')} {cfg.get('stream', '')}/{cfg.get('scenario', '')}",
            "budget": format_bytes(memory) if memory else "none", "model": _model(cfg),
            "training": _training(cfg),
            "ACC": acc, "BWT": f"{100 * m['bwt']:+.2f}%", "forgetting": f"{100 * m['forgetting']:.2f}%",
            "state (peak)": format_bytes(peak) if peak is not None else "-",
            "time": f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "-"}


def compare_runs(run_dirs) -> list[dict[str, str]]:
    """Rows for ``run_dirs`` in the order given; every directory is checked before any output."""
    if not run_dirs:
        raise ConfigError("compare needs at least one run directory")
    return [row(load_run(d)) for d in run_dirs]


def plot_curves(run_dirs, path: str | os.PathLike[str]) -> None:
    """One PNG with each run's ACC after every experience (in %, experiences from 1). Refuses to
    replace an existing file; written atomically."""
    from .plots import _atomic

    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ConfigError(f"--plot writes a PNG; give a file name ending in .png, got {target}")
    if target.exists():
        raise ConfigError(f"{target} exists; choose another name or remove it first")
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write {target}: {target.parent} is not a directory")
    runs = [load_run(d) for d in run_dirs]
    _atomic(target, lambda tmp: _figure(runs).savefig(tmp, format="png", dpi=110))


def _figure(runs: list[dict]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    longest = 1
    for run in runs:
        curve = [100 * a for a in run["metrics"]["acc_curve"]]
        longest = max(longest, len(run["metrics"]["acc_matrix"][0]))
        label = f"{row(run)['strategies']}: {Path(run['dir']).name} ({curve[-1]:.1f}%)"
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=label)
    ax.set_xticks(range(1, longest + 1))
    ax.set_ylim(0.0, 105.0)
    ax.set_xlabel("after training on experience")
    ax.set_ylabel("average accuracy so far, ACC (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("edgelll compare", fontsize=10)
    fig.tight_layout()
    return fig

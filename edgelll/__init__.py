"""edgelll: incremental (lifelong) learning on edge devices under memory and compute budgets.

The public names are resolved on first use (PEP 562), so ``import edgelll`` stays cheap: the
command line answers ``--version``, ``--help`` and ``compare`` without importing torch, and only
a run (``edgelll.learn``) or the strategy registry pays for it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the submodule that defines it
_LAZY = {
    "LearnConfig": "config", "resolve": "config",
    "BudgetError": "errors", "CheckpointError": "errors", "ConfigError": "errors",
    "DataError": "errors", "EdgelllError": "errors", "ExportError": "errors",
    "OutputError": "errors",
    "RunResult": "learner", "learn": "learner", "load_model": "artifact",
    "compare_runs": "compare",
    "ExportOptions": "export", "export_run": "export",
    "ProfileOptions": "profiler", "profile_targets": "profiler",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgelll' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

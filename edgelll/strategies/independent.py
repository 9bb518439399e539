"""Independent models: a fresh network for every task, old ones frozen.

The lecture outline's "one model per task" baseline: no forgetting and no transfer, and storage
that grows with every task (counted honestly: every column's parameters are in the report). The
model's backbone becomes :class:`edgelll.models.Columns`, one column per task, and its head one
block per column (``edgelll.models.BlockHead``) that reads only its own column's features: routed
by task id in the task scenario, side by side (each task's classes a block of the global label
space) in the class scenario. The config refuses the domain scenario, which has neither.
"""

from __future__ import annotations

from .base import Strategy


class Independent(Strategy):
    name = "independent"
    description = "a separate model per task (no forgetting, no transfer, memory grows)"

    def adapt_model(self, ctx, model, exp):
        if model.columns is None:
            model.to_columns("task" if ctx.stream.scenario == "task" else "class",
                             exp.n_local_classes)
        return model

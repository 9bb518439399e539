"""Independent models: a fresh network for every task, old ones frozen.

The lecture outline's "one model per task" baseline: no forgetting and no transfer, and storage
that grows with every task (counted honestly: every member's parameters are in the report).
"""

from __future__ import annotations

from edgelll.models.per_task import ModelPerTask

from .base import Strategy


class Independent(Strategy):
    name = "independent"
    description = "a separate model per task (no forgetting, no transfer, memory grows)"

    def adapt_model(self, ctx, model, exp):
        if isinstance(model, ModelPerTask):
            return model
        # Each member answers for its own task's classes only.
        model.set_head({"kind": "single", "sizes": [exp.n_local_classes]})
        route = "task" if ctx.stream.scenario == "task" else "class"
        return ModelPerTask([model], route)

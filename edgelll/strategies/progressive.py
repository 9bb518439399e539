"""Progressive Neural Networks (Rusu et al. 2016, arXiv:1606.04671): a new column per task with
lateral adapters from the frozen earlier columns at every hidden layer
(:mod:`edgelll.models.progressive`), and one head block per column chosen by task id. Nothing
a later task trains reaches an earlier column, so task-scenario forgetting is exactly zero; the
price is a network that grows by a column (and its adapters) per task, every byte of it counted.
``width_ratio`` < 1 makes the later columns narrower (the model's widths scaled), for parameter
efficiency. Without task ids at test time (class and domain scenarios) there is no column to
pick, so the configuration refuses those scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .base import Strategy


@dataclass(frozen=True)
class ProgressiveParams:
    width_ratio: float = field(default=1.0, metadata={
        "help": "widths of the columns after the first, as a fraction of the model's"})

    def __post_init__(self) -> None:
        if not 0 < self.width_ratio <= 1:
            raise ConfigError(f"progressive.width_ratio must be in (0, 1], got {self.width_ratio}")


class ProgressiveNets(Strategy):
    name = "progressive"
    description = "progressive neural networks: a column per task, lateral adapters (task ids)"
    Params = ProgressiveParams

    def adapt_model(self, ctx, model, exp):
        if model.progressive is None:
            if model.name not in ("mlp", "convnet"):
                raise ConfigError(f"progressive builds columns of mlp or convnet layers, not of "
                                  f"{model.name!r}; use --model mlp or --model convnet")
            try:
                model.to_progressive(exp.n_local_classes, self.params.width_ratio)
            except ValueError as exc:
                raise ConfigError(f"progressive: {exc}") from None
        return model

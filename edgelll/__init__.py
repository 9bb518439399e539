"""edgelll: incremental (lifelong) learning on edge devices under memory and compute budgets."""

__version__ = "0.1.0"

from .config import LearnConfig, resolve  # noqa: E402
from .errors import BudgetError, CheckpointError, ConfigError, DataError, EdgelllError  # noqa: E402
from .learner import RunResult, learn  # noqa: E402
from .artifact import load_model  # noqa: E402

__all__ = ["BudgetError", "CheckpointError", "ConfigError", "DataError", "EdgelllError",
           "LearnConfig", "RunResult", "__version__", "learn", "load_model", "resolve"]

"""Networks and heads for edgelll, installed as ``edgelll.models``."""

from . import bias, convnet, mlp, per_task  # noqa: F401  (registers the models and wrappers)
from .base import EdgeModel
from .heads import IncrementalClassifier, MultiHeadClassifier
from .registry import create_model, list_models, model_params, rebuild, register_wrapper

__all__ = ["EdgeModel", "IncrementalClassifier", "MultiHeadClassifier", "create_model",
           "list_models", "model_params", "rebuild", "register_wrapper"]

"""Networks and heads for edgelll, installed as ``edgelll.models``."""

from . import convnet, mlp  # noqa: F401  (registers the models)
from .base import EdgeModel
from .heads import IncrementalClassifier, MultiHeadClassifier
from .registry import create_model, list_models, model_params, rebuild

__all__ = ["EdgeModel", "IncrementalClassifier", "MultiHeadClassifier", "create_model",
           "list_models", "model_params", "rebuild"]

"""Networks and heads for edgelll, installed as ``edgelll.models``."""

from . import convnet, mlp  # noqa: F401  (registers the models)
from .base import Columns, EdgeModel, Whiten
from .heads import (BiasHead, BlockHead, Head, IncrementalClassifier, MultiHeadClassifier,
                    NearestMeanHead, make_head)
from .gradient_free import CompetitiveHead, GradientFreeHead, HebbianHead, NeuralGasHead
from .registry import create_model, list_models, model_params, rebuild

__all__ = ["BiasHead", "BlockHead", "Columns", "CompetitiveHead", "EdgeModel",
           "GradientFreeHead", "Head", "HebbianHead", "IncrementalClassifier", "NeuralGasHead",
           "MultiHeadClassifier", "NearestMeanHead", "create_model", "list_models", "make_head",
           "model_params", "rebuild", "Whiten"]

"""Multi-layer perceptrons: the 784-400-400-10 network of the continual-learning literature."""

from __future__ import annotations

import math

from torch import nn

from .base import EdgeModel
from .registry import register


def _mlp(input_shape: tuple[int, ...], hidden: tuple[int, ...], pool: int = 1,
         norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    if pool > 1:
        if len(input_shape) != 3:
            raise ValueError("pool needs images shaped (C, H, W)")
        layers.append(nn.AvgPool2d(pool))  # cheaper inputs: 28x28 MNIST becomes 14x14 at pool=2
        c, h, w = input_shape
        input_shape = (c, h // pool, w // pool)
    layers.append(nn.Flatten())
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h)] + ([nn.BatchNorm1d(h)] if norm else []) + [nn.ReLU()]
        width = h
    return nn.Sequential(*layers)


@register("mlp", "fully connected ReLU network, hidden widths configurable (default 400-400)")
def mlp(input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...] = (400, 400),
        pool: int = 1, norm: bool = False, multi_head: bool = False) -> EdgeModel:
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ValueError("hidden widths must be positive integers, e.g. --set model.hidden=400,400")
    if int(pool) < 1:
        raise ValueError("pool must be a positive integer (1: no pooling)")
    args = {"hidden": hidden, "pool": int(pool)}
    if norm:  # BatchNorm1d after each hidden Linear; recorded only when on: old specs read the same
        args["norm"] = True
    return EdgeModel("mlp", args, _mlp(input_shape, hidden, int(pool), bool(norm)), hidden[-1],
                     n_classes, multi_head)


@register("mlp-small", "two 100-unit hidden layers: a microcontroller-sized MLP")
def mlp_small(input_shape: tuple[int, ...], n_classes: int, multi_head: bool = False) -> EdgeModel:
    model = mlp(input_shape, n_classes, hidden=(100, 100), multi_head=multi_head)
    model.name, model.args = "mlp-small", {}  # rebuilt by name: mlp-small has no arguments
    return model

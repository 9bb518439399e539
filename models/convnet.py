"""A small convolutional network for image streams (two conv blocks, then a linear layer)."""

from __future__ import annotations

from torch import nn

from .base import EdgeModel
from .registry import register


@register("convnet", "two 3x3 conv blocks with max-pooling and a hidden linear layer")
def convnet(input_shape: tuple[int, ...], n_classes: int, channels: tuple[int, ...] = (16, 32),
            hidden: int = 128, multi_head: bool = False) -> EdgeModel:
    if len(input_shape) != 3:
        raise ValueError(f"convnet needs images shaped (C, H, W), got per-sample shape {input_shape}")
    channels = tuple(int(c) for c in channels)
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
        if h >= 2 and w >= 2:  # 8x8 digits survive two poolings, 28x28 MNIST too
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU()]
    return EdgeModel("convnet", {"channels": channels, "hidden": int(hidden)}, nn.Sequential(*layers),
                     int(hidden), n_classes, multi_head)

"""A small convolutional network for image streams (two conv blocks, then a linear layer).

``channels`` gives one 3x3 conv block per entry; ``pools`` says which blocks max-pool (default:
each block while the feature map is at least 2x2, as before the argument existed), and ``hidden``
is one linear width or several. Net2Net growth (``edgelll.models.net2net``) writes these when it
inserts a block or a layer, so the spec of a grown network rebuilds it. ``norm`` puts a BatchNorm
after each conv and hidden linear layer, before its ReLU.
"""

from __future__ import annotations

from torch import nn

from .base import EdgeModel
from .registry import register


@register("convnet", "two 3x3 conv blocks with max-pooling and a hidden linear layer")
def convnet(input_shape: tuple[int, ...], n_classes: int, channels: tuple[int, ...] = (16, 32),
            hidden: int | tuple[int, ...] = 128, pools: tuple[bool, ...] | None = None,
            norm: bool = False, multi_head: bool = False) -> EdgeModel:
    if len(input_shape) != 3:
        raise ValueError(f"convnet needs images shaped (C, H, W), got per-sample shape "
                         f"{input_shape}")
    channels = tuple(int(c) for c in channels)
    widths = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
    if not widths:
        raise ValueError("hidden needs at least one width, e.g. --set model.hidden=128")
    if pools is not None and len(pools) != len(channels):
        raise ValueError(f"pools needs one entry per conv block ({len(channels)}), got "
                         f"{len(pools)}")
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for i, out in enumerate(channels):
        layers += [nn.Conv2d(c, out, 3, padding=1)] + ([nn.BatchNorm2d(out)] if norm else [])
        layers.append(nn.ReLU())
        pool = (h >= 2 and w >= 2) if pools is None else bool(pools[i])
        if pool:  # 8x8 digits survive two poolings, 28x28 MNIST too
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    width = c * h * w
    layers.append(nn.Flatten())
    for out in widths:
        layers += [nn.Linear(width, out)] + ([nn.BatchNorm1d(out)] if norm else []) + [nn.ReLU()]
        width = out
    args: dict = {"channels": channels, "hidden": widths[0] if isinstance(hidden, int) else widths}
    if pools is not None:
        args["pools"] = tuple(bool(p) for p in pools)
    if norm:  # recorded only when on, so the specs of existing runs read as before
        args["norm"] = True
    return EdgeModel("convnet", args, nn.Sequential(*layers), widths[-1], n_classes, multi_head)

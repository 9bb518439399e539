"""Image layouts: 4-D arrays arrive channels first ``(N, C, H, W)`` (torch's) or channels last
``(N, H, W, C)`` (numpy's, PIL's, TensorFlow's usual), and are stored channels first.

A channels-last colour array read as channels first trains without error on nonsense (a 32x32x3
CIFAR-shaped array became 32 channels of 32x3 images), so ``auto`` decides from the shape: a last
axis of 1, 3 or 4 (grey, RGB, RGBA) with a second axis that is not one of those is channels last.
When both axes could be channels, channels first is assumed and a warning says so.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import ConfigError, EdgelllWarning

LAYOUTS = ("auto", "nchw", "nhwc")
_CHANNELS = (1, 3, 4)


def detect(shape: tuple[int, ...]) -> tuple[str, bool]:
    """The layout of a 4-D shape under ``auto``, and whether the shape was ambiguous."""
    first, last = shape[1] in _CHANNELS, shape[3] in _CHANNELS
    if last and not first:
        return "nhwc", False
    return "nchw", first and last


def to_nchw(x: np.ndarray, layout: str, what: str) -> np.ndarray:
    """``x`` (4-D) as channels first; a channels-last array is copied into that order."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if x.ndim != 4:
        return x
    if layout == "auto":
        layout, ambiguous = detect(x.shape)
        if ambiguous:
            warnings.warn(f"{what} has shape {x.shape}, which could be channels first or last; "
                          f"read as (N, C, H, W) = {x.shape}, pass --layout nhwc (layout='nhwc') "
                          f"if the channels are last", EdgelllWarning, stacklevel=3)
    if layout == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x

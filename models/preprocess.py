"""The model's first stage: samples as stored (uint8 images, float vectors) to normalised inputs.

Normalisation belongs to the model, not to the stream that trained it, so a checkpoint, an
exported graph or the device runtime maps raw samples to predictions without the data set. The
constants are buffers (they move with ``.to(device)`` and ride in the state dict) and plain values
in :meth:`Preprocess.spec` (what ``edgelll.load_model``, export metadata and the runtime read).
Samples are laid out (C, H, W) or (D,); the layout of the arrays a user gave is resolved once when
data is loaded.
"""

from __future__ import annotations

import torch
from torch import nn

DTYPES = {"uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
          "int64": torch.int64, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float32": torch.float32, "float64": torch.float64}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class Preprocess(nn.Module):
    """``(x - mean) / std`` in float32, one fused affine op per batch."""

    def __init__(self, shape=(), dtype: str = "float32", layout: str = "nchw", mean: float = 0.0,
                 std: float = 1.0) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"unknown input dtype {dtype!r}")
        if not (std > 0):
            raise ValueError(f"the input standard deviation must be > 0, got {std}")
        self.shape = tuple(int(s) for s in shape)
        self.dtype, self.layout = dtype, layout
        self.mean_value, self.std_value = float(mean), float(std)
        self.register_buffer("mean", torch.tensor(self.mean_value, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(1.0 / self.std_value, dtype=torch.float32))

    def spec(self) -> dict:
        return {"shape": list(self.shape), **self.args()}

    def args(self) -> dict:
        """What ``create_model(..., input=...)`` takes to preprocess the same samples."""
        return {"dtype": self.dtype, "layout": self.layout, "mean": self.mean_value,
                "std": self.std_value}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32).sub(self.mean).mul_(self.scale)

"""Per-sample affine quantisation of activations into byte rows.

A sample's activations h (any shape, flattened to n values) become codes
round((h - lo) / (hi - lo) * (2^bits - 1)) with its own lo and hi, stored as float16 at the end of
the row. With 4 bits two codes share a byte. A row is plain uint8, so exemplar buffers store and
checkpoint quantised latents exactly as they store images.
"""

from __future__ import annotations

import torch

SCALE_BYTES = 4  # lo and hi as float16


def row_bytes(n: int, bits: int) -> int:
    return (n * bits + 7) // 8 + SCALE_BYTES


def quantize(h: torch.Tensor, bits: int) -> torch.Tensor:
    """(N, ...) float -> (N, row_bytes) uint8."""
    if bits not in (4, 8):
        raise ValueError("bits must be 4 or 8")
    flat = h.detach().reshape(h.shape[0], -1).float()
    lo = flat.min(dim=1, keepdim=True).values.half()
    hi = flat.max(dim=1, keepdim=True).values.half()
    levels = (1 << bits) - 1
    span = (hi.float() - lo.float()).clamp_min(1e-8)
    codes = ((flat - lo.float()) / span * levels).round().clamp(0, levels).to(torch.uint8)
    if bits == 4:
        if codes.shape[1] % 2:
            codes = torch.cat([codes, codes.new_zeros(codes.shape[0], 1)], dim=1)
        codes = codes[:, 0::2] | (codes[:, 1::2] << 4)
    scale = torch.cat([lo, hi], dim=1).view(torch.uint8)  # 2 halves -> 4 bytes per row
    return torch.cat([codes, scale], dim=1)


def dequantize(rows: torch.Tensor, shape: tuple[int, ...], bits: int) -> torch.Tensor:
    """(N, row_bytes) uint8 -> (N, *shape) float32."""
    n = 1
    for d in shape:
        n *= d
    codes, scale = rows[:, :-SCALE_BYTES], rows[:, -SCALE_BYTES:].contiguous()
    lohi = scale.view(torch.float16).float()
    if bits == 4:
        codes = torch.stack([codes & 0x0F, codes >> 4], dim=2).reshape(rows.shape[0], -1)
    codes = codes[:, :n].float()
    levels = (1 << bits) - 1
    out = lohi[:, :1] + codes / levels * (lohi[:, 1:] - lohi[:, :1])
    return out.reshape(rows.shape[0], *shape)

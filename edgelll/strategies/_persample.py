"""Means over samples of elementwise-mapped per-sample gradients, for EWC's Fisher and MAS.

``mean_i elem(d loss_i / d theta)`` for every trainable parameter, where ``loss(out, y)`` sums a
per-sample loss over a batch and ``elem`` is square (EWC) or absolute value (MAS). Two exact paths:

- linear layers: when every trainable parameter sits in an ``nn.Linear`` applied once per sample,
  sample i's weight gradient is g_i a_i^T (g: gradient at the layer's output, a: its input), and
  elem acts per entry, so sum_i elem(g_i a_i^T) = elem(G)^T elem(A) for square and abs -- one
  matmul, no per-sample gradient in memory;
- in general: per-sample gradients with ``torch.func`` (vmap over grad), in chunks.

Never a Python loop over samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, grad, vmap

Loss = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
Elem = Callable[[torch.Tensor], torch.Tensor]


def per_sample_mean(model, x, y, t, loss: Loss, elem: Elem, chunk: int) -> dict[str, torch.Tensor]:
    fast = linear_path(model, x, y, t, loss, elem, max(chunk, 256))
    return fast if fast is not None else vmap_path(model, x, y, t, loss, elem, chunk)


def _part(v: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    return None if v is None else v[sl]


def linear_path(model, x, y, t, loss: Loss, elem: Elem, chunk: int) -> dict[str, torch.Tensor] | None:
    """The closed form above; None when the model has parameters outside linear layers or a
    layer runs twice per sample (the identity would not hold)."""
    # Frozen layers (old columns, a frozen backbone) have no gradient to take: not hooked.
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
               and any(p.requires_grad for p in m.parameters(recurse=False))}
    covered = {f"{n}.{k}" for n, m in linears.items() for k, _ in m.named_parameters(recurse=False)}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    if not trainable or not trainable <= covered:
        return None
    seen: dict[str, list] = {}

    def hook(name):
        def fn(module, inputs, output):
            seen.setdefault(name, []).append((inputs[0].detach(), output))
        return fn

    total = {k: torch.zeros_like(p) for k, p in model.named_parameters() if p.requires_grad}
    handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, x.shape[0], chunk):
            sl = slice(start, start + chunk)
            seen.clear()
            out = model(x[sl], _part(t, sl))
            if any(len(v) != 1 for v in seen.values()):
                return None
            # Summed over samples, each sample's output gradient is its own gradient.
            grads = torch.autograd.grad(loss(out, _part(y, sl)), [v[0][1] for v in seen.values()],
                                        allow_unused=True)
            for (name, [(a, _)]), g in zip(seen.items(), grads):
                if g is None:  # a layer the loss does not depend on: zero
                    continue
                a1, g1 = elem(a.reshape(-1, a.shape[-1])), elem(g.reshape(-1, g.shape[-1]))
                if f"{name}.weight" in total:
                    total[f"{name}.weight"] += g1.T @ a1
                if f"{name}.bias" in total:
                    total[f"{name}.bias"] += g1.sum(0)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: v / x.shape[0] for k, v in total.items()}


def vmap_path(model, x, y, t, loss: Loss, elem: Elem, chunk: int) -> dict[str, torch.Tensor]:
    """Per-sample gradients with torch.func (vmap over grad), ``chunk`` samples at a time."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = dict(model.named_buffers())

    def one(p, xi, yi, ti):
        args = (xi.unsqueeze(0),) if ti is None else (xi.unsqueeze(0), ti.unsqueeze(0))
        out = functional_call(model, ({**p, **frozen}, buffers), args)
        return loss(out, None if yi is None else yi.unsqueeze(0))

    per_sample = vmap(grad(one), in_dims=(None, 0, None if y is None else 0,
                                          None if t is None else 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, x.shape[0], chunk):
            sl = slice(start, start + chunk)
            for k, gk in per_sample(params, x[sl], _part(y, sl), _part(t, sl)).items():
                total[k] += elem(gk).sum(0)
    finally:
        model.train(was_training)
    return {k: v / x.shape[0] for k, v in total.items()}

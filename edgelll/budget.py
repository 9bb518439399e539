"""Memory and compute budgets.

The learner's state is counted component by component: parameters, gradients, optimizer state,
model buffers, each strategy's state, and an estimate of activation memory for one training batch.
Before training, :func:`plan_memory` predicts the largest each part gets over the whole stream
(the model is grown to its final shape on the ``meta`` device, which allocates nothing) and refuses
a budget the fixed parts do not fit; strategies with a knob (the replay buffer) take the rest.
After each experience, :func:`measure_memory` sums the real tensors' ``nbytes``.

Compute is counted in optimiser steps and in estimated FLOPs: a training step costs three forward
passes (forward, and backward at about twice the forward), where a forward costs 2 * MACs of every
linear and convolution layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import format_bytes
from .errors import BudgetError
from .strategies.base import Plan, Strategy


@dataclass(frozen=True)
class Probe:
    """Per-sample costs of a model's forward pass, found once with forward hooks."""

    activation_bytes: int  # outputs of every leaf module for one sample (kept for backward)
    forward_flops: int  # 2 * multiply-accumulates of linear and conv layers for one sample


def probe(model: nn.Module, sample: torch.Tensor, task_ids: torch.Tensor | None) -> Probe:
    """Run ``sample`` (a batch of one sample as stored) through ``model`` and count. The
    normalised input, the output of the model's preprocessing, counts as an activation."""
    acts, flops = [0], [0]

    def hook(module, inputs, output):
        shares_input = any(isinstance(i, torch.Tensor) and i.data_ptr() == output.data_ptr()
                           for i in inputs) if isinstance(output, torch.Tensor) else True
        if not shares_input:  # a view (Flatten, reshape) takes no memory of its own
            acts[0] += output.nbytes
        if isinstance(module, nn.Linear):
            flops[0] += 2 * module.in_features * module.out_features * output.shape[0]
        elif isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            flops[0] += 2 * k * output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(sample, task_ids)
    finally:
        for h in handles:
            h.remove()
    return Probe(acts[0], flops[0])


def optimizer_state_bytes(trainable: list[torch.Tensor], optimizer: str, momentum: float) -> int:
    """Bytes torch's optimizers keep: Adam two moments and a float32 step per tensor; SGD with
    momentum one buffer; plain SGD nothing."""
    size = sum(p.nbytes for p in trainable)
    if optimizer == "adam":
        return 2 * size + 4 * len(trainable)
    return size if momentum > 0 else 0


def measure_memory(model: nn.Module, optimizer,
                   strategies: list[Strategy], activation_bytes: int) -> dict[str, int]:
    """The learner's state now, from the tensors themselves."""
    params = list(model.parameters())
    opt_bytes = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            opt_bytes += sum(v.nbytes for v in state.values() if isinstance(v, torch.Tensor))
    out = {
        "parameters": sum(p.nbytes for p in params),
        "gradients": sum(p.grad.nbytes for p in params if p.grad is not None),
        "optimizer": opt_bytes,
        "buffers": sum(b.nbytes for b in model.buffers()),
        "activations": activation_bytes,
    }
    for s in strategies:
        out[f"strategy:{s.name}"] = s.memory_bytes()
    return out


def simulate(model: nn.Module, stream, strategies: list[Strategy], ctx,
             freeze_after: int | None = None):
    """The model as it will be during each experience, built on the meta device (which
    allocates nothing): strategies adapt it, the head grows, the backbone freezes. Yields it
    once per experience (the same object, changed in place)."""
    from edgelll.models import rebuild

    with torch.device("meta"):
        sim = rebuild(model.spec())
    for exp in stream.experiences:
        with torch.device("meta"):
            for s in strategies:
                sim = s.adapt_model(ctx, sim, exp)
            sim.adapt(exp)
            if freeze_after is not None and exp.index >= freeze_after:
                sim.freeze_backbone()
        yield sim


def final_model(model: nn.Module, stream, strategies: list[Strategy], ctx) -> nn.Module:
    """The model as it will be after the last experience, built on the meta device."""
    for sim in simulate(model, stream, strategies, ctx):
        pass
    return sim


def plan_memory(model: nn.Module, stream, strategies: list[Strategy], ctx, cfg,
                activation_bytes_per_row: int) -> tuple[dict[str, int], Plan]:
    """Predict each component's peak and fit knobs into ``cfg.memory``; refuse what cannot fit."""
    # Gradients and optimizer state peak in the experience with the most trainable parameters
    # (a frozen backbone or frozen lower layers train less later on); the rest in the last.
    trainable: list[torch.Tensor] = []
    for sim in simulate(model, stream, strategies, ctx, cfg.freeze_backbone_after):
        now = [p for p in sim.parameters() if p.requires_grad]
        if sum(p.nbytes for p in now) > sum(p.nbytes for p in trainable):
            trainable = now
    params = list(sim.parameters())
    plan = Plan(param_bytes=sum(p.nbytes for p in params),
                buffer_bytes=sum(b.nbytes for b in sim.buffers()),
                trainable_bytes=sum(p.nbytes for p in trainable),
                sample_bytes=stream.sample_bytes, n_experiences=len(stream),
                batch_size=cfg.batch_size,
                train_bytes=tuple(e.train_bytes for e in stream.experiences), model=model,
                activation_bytes=activation_bytes_per_row * (cfg.batch_size + sum(
                    s.extra_rows(cfg.batch_size) for s in strategies)))
    rows = cfg.batch_size + sum(s.extra_rows(cfg.batch_size) for s in strategies)
    fixed = {
        "parameters": plan.param_bytes,
        "gradients": plan.trainable_bytes,
        "optimizer": optimizer_state_bytes(trainable, cfg.optimizer, cfg.momentum),
        "buffers": plan.buffer_bytes,
        "activations": activation_bytes_per_row * rows,
    }
    knobs = [s for s in strategies if cfg.memory is not None and s.sized_by_budget()]
    for s in strategies:
        if s not in knobs:
            fixed[f"strategy:{s.name}"] = s.planned_bytes(plan)
    if cfg.memory is not None:
        total = sum(fixed.values())
        if total > cfg.memory:
            parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in fixed.items())
            # Named as the setting and its option: Python callers and CLI users both read it.
            over = format_bytes(total - cfg.memory)
            raise BudgetError(f"memory (--memory) {format_bytes(cfg.memory)} is too small: {parts} "
                              f"need {format_bytes(total)}, {over} over; raise memory, use a "
                              f"smaller model or batch_size (--model, --batch-size), or drop a "
                              f"strategy")
        for s in knobs:  # each knob takes what is left after the ones before it
            s.fit_budget(plan, cfg.memory - sum(fixed.values()))
            fixed[f"strategy:{s.name}"] = s.planned_bytes(plan)
    return fixed, plan


def steps_for_flops(limit: float | None, flops_per_row: int, rows: int) -> int | None:
    if limit is None:
        return None
    per_step = 3 * flops_per_row * rows
    steps = int(limit // per_step)
    if steps < 1:
        raise BudgetError(f"--compute-flops {limit:.3g} is below one training step "
                          f"({per_step:.3g} FLOPs at batch {rows}); raise it or lower --batch-size")
    return steps

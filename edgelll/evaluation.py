"""Test accuracy of a model on the experiences of a stream, whole batches at a time."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


def autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, exp, batch_size: int, amp: bool = False) -> float:
    """Test accuracy on one experience; a sample whose task has no output units counts wrong."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=exp.y_test.device)
    t_all = torch.full_like(exp.y_test, exp.task_id)
    with autocast(exp.x_test.device, amp):
        for start in range(0, exp.y_test.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            best, pred = model(exp.x_test[sl], t_all[sl]).float().max(1)
            correct += ((pred == exp.y_test[sl]) & torch.isfinite(best)).sum()
    model.train(was_training)
    return correct.item() / max(1, exp.y_test.shape[0])


def evaluate_all(model: nn.Module, stream, cfg) -> list[float]:
    return [evaluate(model, e, cfg.eval_batch_size, cfg.amp) for e in stream.experiences]

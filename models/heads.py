"""Classifier heads that grow with the stream.

`IncrementalClassifier` is one linear layer whose output units grow when new classes arrive; the
rows of the old classes are kept bit for bit. `MultiHeadClassifier` holds one linear head per task
for the task-incremental scenario (van de Ven & Tolias 2019, arXiv:1904.07734) and picks each
sample's head by its task id with tensor operations, not a Python loop over samples.
"""

from __future__ import annotations

import torch
from torch import nn


class IncrementalClassifier(nn.Module):
    """A linear head whose number of classes only grows."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features, n_classes)

    @property
    def n_classes(self) -> int:
        return self.linear.out_features

    def spec(self) -> dict:
        return {"kind": "single", "sizes": [self.n_classes]}

    def grow(self, n_classes: int) -> bool:
        """Widen to ``n_classes`` outputs, keeping the existing rows; True if the shape changed."""
        old = self.linear
        if n_classes <= old.out_features:
            return False
        new = nn.Linear(self.in_features, n_classes).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            new.weight[: old.out_features] = old.weight
            new.bias[: old.out_features] = old.bias
        self.linear = new
        return True

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(feats)


class MultiHeadClassifier(nn.Module):
    """One linear head per task; output width is the largest head, padded units masked out."""

    def __init__(self, in_features: int, sizes: list[int] | tuple[int, ...] = ()) -> None:
        super().__init__()
        self.in_features = in_features
        self.heads = nn.ModuleList(nn.Linear(in_features, n) for n in sizes)

    @property
    def n_classes(self) -> int:
        return max((h.out_features for h in self.heads), default=0)

    def spec(self) -> dict:
        return {"kind": "multi", "sizes": [h.out_features for h in self.heads]}

    def add_head(self, n_classes: int) -> None:
        ref = next(self.parameters(), None)
        head = nn.Linear(self.in_features, n_classes)
        if ref is not None:
            head = head.to(ref.device, ref.dtype)
        self.heads.append(head)

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        if task_ids is None:
            raise ValueError("a multi-head classifier needs the task id of every sample")
        width = self.n_classes
        # Every head sees the whole batch (a few small matmuls), then each sample takes its own
        # head's row; units a head does not have are -inf so they are never predicted.
        outs = []
        for head in self.heads:
            out = head(feats)
            if out.shape[1] < width:
                pad = out.new_full((out.shape[0], width - out.shape[1]), float("-inf"))
                out = torch.cat([out, pad], dim=1)
            outs.append(out)
        stacked = torch.stack(outs, dim=0)  # (heads, batch, width)
        index = task_ids.clamp(max=len(self.heads) - 1).view(1, -1, 1).expand(1, -1, width)
        logits = stacked.gather(0, index).squeeze(0)
        # A task whose head does not exist yet cannot be answered: every unit is -inf. Masking
        # unconditionally keeps the forward free of data-dependent branches (torch.func, export).
        return logits.masked_fill((task_ids >= len(self.heads)).view(-1, 1), float("-inf"))


def make_head(spec: dict, in_features: int) -> nn.Module:
    """Rebuild a head from :meth:`spec` (plain values, as stored in checkpoints)."""
    if spec["kind"] == "single":
        return IncrementalClassifier(in_features, int(spec["sizes"][0]))
    if spec["kind"] == "multi":
        return MultiHeadClassifier(in_features, [int(s) for s in spec["sizes"]])
    raise ValueError(f"unknown head kind {spec['kind']!r}")

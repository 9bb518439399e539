"""The uniform model interface every edgelll network has.

A model is a feature extractor plus a head: ``forward_features(x)``, ``forward_head(feats,
task_ids)`` and ``forward(x, task_ids)``. ``arch()`` returns plain values (registry name, its
arguments, the head's grown sizes) from which :func:`edgelll.models.rebuild` makes the same
network again, so checkpoints never pickle a module.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import IncrementalClassifier, MultiHeadClassifier, make_head


class EdgeModel(nn.Module):
    """A backbone with a growing single head (class/domain scenarios) or one head per task."""

    def __init__(self, name: str, args: dict, backbone: nn.Module, feat_dim: int,
                 n_classes: int, multi_head: bool = False) -> None:
        super().__init__()
        self.name = name
        self.args = dict(args)
        self.input_shape: tuple[int, ...] = ()  # set by create_model
        self.feat_dim = feat_dim
        self.backbone = backbone
        self.head: nn.Module = (MultiHeadClassifier(feat_dim, [n_classes]) if multi_head
                                else IncrementalClassifier(feat_dim, n_classes))

    @property
    def multi_head(self) -> bool:
        return isinstance(self.head, MultiHeadClassifier)

    def arch(self) -> dict:
        return {"name": self.name, "args": dict(self.args), "head": self.head.spec()}

    def set_head(self, spec: dict) -> None:
        ref = next(self.backbone.parameters())
        self.head = make_head(spec, self.feat_dim).to(ref.device, ref.dtype)

    def adapt(self, exp) -> bool:
        """Make room for an experience: grow the single head or add the task's head.

        ``exp`` needs ``task_id``, ``head_size`` (units a single head needs after it) and
        ``n_local_classes``. Returns True when parameters changed (the optimizer is rebuilt).
        """
        if isinstance(self.head, MultiHeadClassifier):
            changed = False
            while len(self.head.heads) <= exp.task_id:
                self.head.add_head(exp.n_local_classes)
                changed = True
            return changed
        return self.head.grow(exp.head_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(feats, task_ids)

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), task_ids)

"""The one protocol every edgelll model follows: preprocess -> backbone -> head.

``forward(x, task_ids)`` takes samples as stored (uint8 images, float vectors): the model
normalises them itself (:class:`~edgelll.models.preprocess.Preprocess`), so no caller does.
``forward_features(x)`` stops before the head. ``spec()`` is the model's plain-data description
(registry name and arguments, input shape, dtype, layout and normalisation, the head's variant and
grown sizes, columns, the class map and task routing) and :func:`edgelll.models.rebuild` makes the
same network from it: checkpoints, export metadata and the device runtime all read that one spec,
and nothing needs the data set to rebuild or run the model.

Task ids are read only by heads that route by task, so callers always pass them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import nn

from .heads import BlockHead, Head, IncrementalClassifier, MultiHeadClassifier, make_head
from .preprocess import Preprocess

SPEC_FORMAT = "edgelll-model/1"


class Columns(nn.Module):
    """Independent backbones side by side (one per task); only the newest learns."""

    def __init__(self, columns: list[nn.Module], width: int) -> None:
        super().__init__()
        self.columns = nn.ModuleList(columns)
        self.width = width  # features of one column
        for old in self.columns[:-1]:
            old.requires_grad_(False)

    def add(self, column: nn.Module) -> None:
        for p in self.columns.parameters():  # frozen: no gradient kept (or counted) either
            p.requires_grad_(False)
            p.grad = None
        self.columns.append(column)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c(x) for c in self.columns], dim=1)


class Whiten(nn.Module):
    """A fixed affine map of the features, ``(f - mean) @ proj``: the within-class whitening of
    :mod:`edgelll.runtime.whiten`, fitted in closed form once the backbone stops training
    (``--whiten``). Identity until fitted; buffers, so checkpoints, ``--memory`` and the exported
    extractor carry it."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("proj", torch.eye(dim))
        self.register_buffer("shrink", torch.full((), float("nan")))  # nan: not fitted yet

    @property
    def fitted(self) -> bool:
        return not bool(torch.isnan(self.shrink))

    def set(self, mean, proj, shrink: float) -> None:
        self.mean.copy_(torch.as_tensor(mean))
        self.proj.copy_(torch.as_tensor(proj))
        self.shrink.fill_(float(shrink))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats.flatten(1) - self.mean) @ self.proj


class EdgeModel(nn.Module):
    """Preprocess, a backbone, and a head (growing single, per task, or a variant)."""

    def __init__(self, name: str, args: dict, backbone: nn.Module, feat_dim: int,
                 n_classes: int, multi_head: bool = False) -> None:
        super().__init__()
        self.name = name
        self.args = dict(args)
        self.labels: dict = {}  # class map and task routing (plain values), set by the learner
        self.preprocess = Preprocess()  # identity until create_model sets the data's constants
        self.backbone = backbone
        self.feat_dim = feat_dim
        self.whiten: Whiten | None = None  # --whiten: a fixed map between backbone and head
        self.head: Head = (MultiHeadClassifier(feat_dim, [n_classes]) if multi_head
                           else IncrementalClassifier(feat_dim, n_classes))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.preprocess.shape

    @property
    def routes_by_task(self) -> bool:
        return self.head.routes_by_task

    @property
    def columns(self) -> Columns | None:
        return self.backbone if isinstance(self.backbone, Columns) else None

    @property
    def progressive(self):
        """The backbone's :class:`~edgelll.models.progressive.Progressive` columns, if any."""
        from .progressive import Progressive
        return self.backbone if isinstance(self.backbone, Progressive) else None

    def spec(self) -> dict:
        spec = {"format": SPEC_FORMAT, "name": self.name, "args": dict(self.args),
                "input": self.preprocess.spec(), "head": self.head.spec(), "labels": self.labels}
        if self.columns is not None:
            spec["columns"] = len(self.columns.columns)
        if self.progressive is not None:
            spec["progressive"] = {"columns": len(self.progressive.columns),
                                   "width_ratio": self.progressive.width_ratio}
        if self.whiten is not None:
            spec["whiten"] = {"features": self.feat_dim}
        return json.loads(json.dumps(spec))  # plain JSON values: tuples become lists

    def set_head(self, spec: dict) -> None:
        ref = next(self.backbone.parameters())
        self.head = make_head(spec, self.feat_dim).to(ref.device, ref.dtype)

    def wrap_head(self, make: Callable[[Head], Head]) -> Head:
        """Put ``make(head)`` in place of a head, below any head that decides predictions on its
        own (a nearest-mean head), so that e.g. a bias correction still reaches the logits."""
        holder, attr = self, "head"
        while getattr(holder, attr).decides and getattr(holder, attr).inner is not None:
            holder, attr = getattr(holder, attr), "inner"
        new = make(getattr(holder, attr))
        setattr(holder, attr, new)
        return new

    def add_whiten(self) -> Whiten:
        """A whitening layer between backbone and head, the identity until fitted
        (:meth:`Whiten.set`); the feature width stays."""
        if self.whiten is None:
            ref = next(self.backbone.parameters())
            self.whiten = Whiten(self.feat_dim).to(ref.device, ref.dtype)
        return self.whiten

    def to_columns(self, route: str, n_classes: int) -> None:
        """One column per task from now on (independent models), each with its own head block."""
        self.backbone = Columns([self.backbone], self.feat_dim)
        ref = next(self.backbone.parameters())
        self.head = BlockHead(self.feat_dim, [n_classes], route).to(ref.device, ref.dtype)

    def to_progressive(self, n_classes: int, width_ratio: float = 1.0) -> None:
        """Progressive columns from now on (Rusu et al. 2016): this backbone is column 0, each
        later task adds a column with lateral adapters, and the head has one block per column,
        routed by task id."""
        from .progressive import Progressive
        ref = next(self.backbone.parameters())
        self.backbone = Progressive(self.backbone, self.input_shape, width_ratio)
        self.feat_dim = self.backbone.widths[0]
        self.head = BlockHead(self.feat_dim, [n_classes], "task").to(ref.device, ref.dtype)

    def add_column(self) -> None:
        """One more progressive column, at ``width_ratio`` of the model's widths."""
        from .progressive import scaled_args
        from .registry import fresh_backbone
        prog = self.progressive
        args = scaled_args(self.name, self.args, prog.width_ratio)
        prog.add(fresh_backbone(self, args))
        self.feat_dim = sum(prog.widths)

    def adapt(self, exp) -> bool:
        """Make room for an experience: a column and its head block for a new task, a wider
        single head, or the task's own head. True when parameters changed."""
        changed = False
        cols = self.columns
        if cols is not None and exp.task_id >= len(cols.columns):
            from .registry import fresh_backbone
            ref = next(cols.parameters())
            cols.add(fresh_backbone(self).to(ref.device, ref.dtype))
            self.head.find(BlockHead.kind).add_block(exp.n_local_classes)
            self.feat_dim = cols.width * len(cols.columns)
            changed = True
        prog = self.progressive
        if prog is not None and exp.task_id >= len(prog.columns):
            self.add_column()
            self.head.find(BlockHead.kind).add_block(exp.n_local_classes, prog.widths[-1])
            changed = True
        return self.head.adapt(exp) or changed

    def freeze_backbone(self) -> None:
        """Stop the backbone learning. Under a closed-form head that decides predictions on its
        own (ncm) the gradient heads below it are frozen too: their loss would reach nothing that
        predicts, so a step needs no backward pass at all."""
        frozen = list(self.backbone.parameters())
        if self.head.decides and self.head.learns == "closed-form":
            frozen += list(self.head.parameters())
        for p in frozen:
            p.requires_grad_(False)
            p.grad = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(self.preprocess(x))
        return feats if self.whiten is None else self.whiten(feats)

    def forward_head(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(feats, task_ids)

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), task_ids)

    @torch.no_grad()
    def predict(self, x, task_ids=None) -> torch.Tensor:
        """Data-set labels for samples as stored (numpy or torch, ``(N, *input_shape)``; a missing
        or extra axis of size 1 is fine). Task ids are needed where the head routes by task. In
        the domain scenario the answer is the label within the task (what the model learnt)."""
        ref = self.preprocess.mean
        x = torch.as_tensor(x, device=ref.device)
        shape = tuple(self.input_shape)
        if tuple(x.shape[1:]) != shape:
            squeeze = lambda s: tuple(d for d in s if d != 1)  # noqa: E731
            if squeeze(x.shape[1:]) != squeeze(shape):
                raise ValueError(f"samples shaped {tuple(x.shape[1:])} do not fit this model's "
                                 f"input {shape} (layout {self.preprocess.layout})")
            x = x.reshape(x.shape[0], *shape)
        t = (torch.zeros(x.shape[0], dtype=torch.long, device=ref.device) if task_ids is None
             else torch.as_tensor(task_ids, device=ref.device).long().expand(x.shape[0]))
        if self.routes_by_task and task_ids is None:
            raise ValueError("this model routes by task: pass task_ids")
        was = self.training
        self.eval()
        units = self(x, t).argmax(1)
        self.train(was)
        labels = self.labels
        if "units" in labels:
            return torch.as_tensor(labels["units"], device=units.device)[units]
        if labels.get("scenario") == "task":
            table = torch.full((len(labels["tasks"]), max(map(len, labels["tasks"]))), -1,
                               dtype=torch.long, device=units.device)
            for i, task in enumerate(labels["tasks"]):
                table[i, : len(task)] = torch.as_tensor(task)
            return table[t, units]
        return units

    def logits(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The learned logits, past heads that decide predictions on their own (a nearest-mean
        head answers with distances in eval mode): what distillation from a frozen copy reads."""
        head = self.head
        while head.decides and head.inner is not None:
            head = head.inner
        return head(self.forward_features(x), task_ids)

"""Classifier heads. A head owns its learning rule, and wrappers are head variants, not layers
around the model, so strategies that each add one compose.

Every head is a :class:`Head`: ``forward(feats, task_ids)`` gives logits (task ids are read only by
heads that route by task), ``adapt(exp)`` makes room for an experience, ``spec()`` gives plain
values that :func:`make_head` rebuilds it from, and ``learns`` says how it learns:

- ``"gradient"``: by the loss the learner backpropagates;
- ``"closed-form"``: by :meth:`Head.update` on a batch's features under ``no_grad``; a frozen
  backbone with such a head needs no backward pass at all.

Variants: ``single`` (one linear layer whose classes only grow; old rows kept bit for bit),
``multi`` (one linear head per task, van de Ven & Tolias 2019, arXiv:1904.07734), ``blocks`` (one
linear head per column of a column backbone, each reading only its own column's features),
``bias`` (BiC's two-parameter correction of the newest classes' logits, Wu et al. 2019,
arXiv:1905.13260, equation 4) and ``nearest-mean`` (class means of the features; iCaRL's
nearest-mean-of-exemplars and the closed-form ``ncm`` head). A wrapper holds the head below it as
``inner``; :meth:`Head.chain` walks them and :meth:`Head.find` finds one by kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

from edgelll.runtime.rules import ncm_means, ncm_scores, ncm_update


class Head(nn.Module):
    kind: ClassVar[str] = ""
    learns: str = "gradient"
    decides: ClassVar[bool] = False  # in eval mode its predictions ignore the logits below it

    def __init__(self) -> None:
        super().__init__()
        self.inner: Head | None = None  # a wrapper's head below it (a submodule once set)

    @property
    def n_classes(self) -> int:
        return self.inner.n_classes if self.inner is not None else 0

    @property
    def routes_by_task(self) -> bool:
        return self.inner.routes_by_task if self.inner is not None else False

    def spec(self) -> dict:
        raise NotImplementedError

    def adapt(self, exp) -> bool:
        """Make room for ``exp``; True when parameters changed (the optimizer is rebuilt)."""
        return self.inner.adapt(exp) if self.inner is not None else False

    @torch.no_grad()
    def update(self, feats: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
               again: bool = False) -> None:
        """Closed-form learning from a batch's features (a no-op for gradient heads); ``again``:
        rows this experience has already shown (a later epoch over its data)."""
        if self.inner is not None:
            self.inner.update(feats, y, t, again)

    def chain(self) -> Iterator[Head]:
        head: Head | None = self
        while head is not None:
            yield head
            head = head.inner

    def find(self, kind: str) -> Head | None:
        return next((h for h in self.chain() if h.kind == kind), None)

    @property
    def closed_form(self) -> bool:
        return any(h.learns == "closed-form" for h in self.chain())


def route_by_task(outs: list[torch.Tensor], task_ids: torch.Tensor | None) -> torch.Tensor:
    """Each sample takes the row of its own task's output; units a task's head lacks and tasks
    without a head are -inf, so they are never predicted. Tensor ops over the whole batch, and
    no data-dependent branch (torch.func and export trace it)."""
    if task_ids is None:
        raise ValueError("a head that routes by task needs the task id of every sample")
    width = max(o.shape[1] for o in outs)
    padded = [nn.functional.pad(o, (0, width - o.shape[1]), value=float("-inf")) for o in outs]
    stacked = torch.stack(padded)  # (heads, batch, width)
    index = task_ids.long().clamp(max=len(outs) - 1).view(1, -1, 1).expand(1, -1, width)
    logits = stacked.gather(0, index).squeeze(0)
    return logits.masked_fill((task_ids >= len(outs)).view(-1, 1), float("-inf"))


def _linear_like(ref: nn.Module | None, in_features: int, n: int) -> nn.Linear:
    layer = nn.Linear(in_features, n)
    p = next(ref.parameters(), None) if ref is not None else None
    return layer.to(p.device, p.dtype) if p is not None else layer


class IncrementalClassifier(Head):
    """A linear head whose number of classes only grows."""

    kind = "single"

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features, n_classes)

    @property
    def n_classes(self) -> int:
        return self.linear.out_features

    def spec(self) -> dict:
        return {"kind": self.kind, "sizes": [self.n_classes]}

    def adapt(self, exp) -> bool:
        return self.grow(exp.head_size)

    def grow(self, n_classes: int) -> bool:
        """Widen to ``n_classes`` outputs, keeping the existing rows; True if the shape changed."""
        old = self.linear
        if n_classes <= old.out_features:
            return False
        new = _linear_like(self, self.in_features, n_classes)
        with torch.no_grad():
            new.weight[: old.out_features] = old.weight
            new.bias[: old.out_features] = old.bias
        new.requires_grad_(old.weight.requires_grad)
        self.linear = new
        return True

    @torch.no_grad()
    def fold(self, start: int, alpha: torch.Tensor, beta: torch.Tensor) -> None:
        """Rewrite rows ``start:`` to give ``alpha * logit + beta`` (the same function)."""
        self.linear.weight[start:].mul_(alpha)
        self.linear.bias[start:].mul_(alpha).add_(beta)

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(feats)


class MultiHeadClassifier(Head):
    """One linear head per task; output width is the largest head, padded units masked out."""

    kind = "multi"

    def __init__(self, in_features: int, sizes: list[int] | tuple[int, ...] = ()) -> None:
        super().__init__()
        self.in_features = in_features
        self.heads = nn.ModuleList(nn.Linear(in_features, n) for n in sizes)

    @property
    def n_classes(self) -> int:
        return max((h.out_features for h in self.heads), default=0)

    @property
    def routes_by_task(self) -> bool:
        return True

    def spec(self) -> dict:
        return {"kind": self.kind, "sizes": [h.out_features for h in self.heads]}

    def add_head(self, n_classes: int) -> None:
        self.heads.append(_linear_like(self, self.in_features, n_classes))

    def adapt(self, exp) -> bool:
        changed = False
        while len(self.heads) <= exp.task_id:
            self.add_head(exp.n_local_classes)
            changed = True
        return changed

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        # Every head sees the whole batch (a few small matmuls), then each sample takes its own.
        return route_by_task([head(feats) for head in self.heads], task_ids)


class BlockHead(Head):
    """One linear head per backbone column, each over its own column's slice of the features:
    ``route="task"`` picks each sample's block by task id, ``"class"`` puts the blocks' classes
    side by side (consecutive blocks of the global label space). Only the newest block learns."""

    kind = "blocks"

    def __init__(self, block_in, sizes: list[int] | tuple[int, ...], route: str) -> None:
        super().__init__()
        if route not in ("task", "class"):
            raise ValueError(f"unknown block route {route!r}")
        # block_in: the features of every column, or one width per block (narrower columns)
        widths = ([int(block_in)] * len(sizes) if isinstance(block_in, int)
                  else [int(w) for w in block_in])
        if len(widths) != len(sizes):
            raise ValueError(f"{len(widths)} block widths for {len(sizes)} blocks")
        self.widths, self.route = widths, route
        self.blocks = nn.ModuleList(nn.Linear(w, n) for w, n in zip(widths, sizes))
        for old in self.blocks[:-1]:
            old.requires_grad_(False)

    @property
    def block_in(self):
        """The features of each block: one int where every block reads as many, else a list."""
        return self.widths[0] if len(set(self.widths)) == 1 else list(self.widths)

    @property
    def offsets(self) -> list[int]:
        """Where each block's slice of the features starts (and, last, their total)."""
        out = [0]
        for w in self.widths:
            out.append(out[-1] + w)
        return out

    @property
    def n_classes(self) -> int:
        sizes = [b.out_features for b in self.blocks]
        return max(sizes, default=0) if self.route == "task" else sum(sizes)

    @property
    def routes_by_task(self) -> bool:
        return self.route == "task"

    def spec(self) -> dict:
        return {"kind": self.kind, "sizes": [b.out_features for b in self.blocks],
                "route": self.route, "block_in": self.block_in}

    def add_block(self, n_classes: int, width: int | None = None) -> None:
        for p in self.blocks.parameters():  # frozen: no gradient kept (or counted) either
            p.requires_grad_(False)
            p.grad = None
        width = self.widths[-1] if width is None else int(width)
        self.blocks.append(_linear_like(self, width, n_classes))
        self.widths.append(width)

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        at = self.offsets
        outs = [b(feats[:, at[i]:at[i + 1]]) for i, b in enumerate(self.blocks)]
        return torch.cat(outs, dim=1) if self.route == "class" else route_by_task(outs, task_ids)


class BiasHead(Head):
    """BiC's bias correction (Wu et al. 2019, equation 4) of the head below it:

        q_k = alpha * o_k + beta  for the newest classes k >= new_from,   q_k = o_k  otherwise.

    Only the newest experience's pair is active. When it is re-pointed at a later experience's
    classes, the old pair is folded into the rows of the classes it corrected (an exact rewrite of
    the same function) and reset to (1, 0). ``alpha`` and ``beta`` never learn from ordinary
    training (``requires_grad`` is False); BiC's stage 2 trains them alone.
    """

    kind = "bias"

    def __init__(self, inner: Head, new_from: int) -> None:
        super().__init__()
        self.inner = inner
        self.new_from = int(new_from)
        ref = next(inner.parameters(), None)
        kw = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
        self.alpha = nn.Parameter(torch.ones((), **kw), requires_grad=False)
        self.beta = nn.Parameter(torch.zeros((), **kw), requires_grad=False)

    def spec(self) -> dict:
        return {"kind": self.kind, "new_from": self.new_from, "inner": self.inner.spec()}

    def correct(self, logits: torch.Tensor) -> torch.Tensor:
        old, new = logits[:, : self.new_from], logits[:, self.new_from:]
        return torch.cat([old, new * self.alpha + self.beta], dim=1)

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.correct(self.inner(feats, task_ids))

    @torch.no_grad()
    def repoint(self, new_from: int) -> None:
        """Fold the active pair into the linear head below, reset it, point it at ``new_from``."""
        linear = self.inner.find(IncrementalClassifier.kind)
        if linear is None:
            raise TypeError("bias correction folds into a single growing head (class scenario)")
        linear.fold(self.new_from, self.alpha, self.beta)
        self.alpha.fill_(1.0)
        self.beta.fill_(0.0)
        self.new_from = int(new_from)


class NearestMeanHead(Head):
    """Classifies by the nearest class mean of the features (rules in edgelll.runtime.rules).

    The state is per-class feature sums and counts (buffers). ``online=True`` makes it a
    closed-form head: :meth:`update` adds every training batch. Without, the means are set by a
    strategy (iCaRL's exemplar means, :meth:`set_stats`). With an ``inner`` gradient head, training
    mode returns the inner logits (the loss that shapes the backbone) and eval mode the negative
    distances; without one, it always returns distances.
    """

    kind = "nearest-mean"
    decides = True

    def __init__(self, inner: Head | None, n_features: int, n_classes: int = 0,
                 cosine: bool = False, online: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.n_features, self.cosine, self.online = n_features, bool(cosine), bool(online)
        self.learns = "closed-form" if online else "gradient"
        ref = next(inner.parameters(), None) if inner is not None else None
        device = ref.device if ref is not None else None
        self.register_buffer("sums", torch.zeros(n_classes, n_features, device=device))
        self.register_buffer("counts", torch.zeros(n_classes, device=device))

    @property
    def n_classes(self) -> int:
        return max(self.sums.shape[0], super().n_classes)

    def spec(self) -> dict:
        return {"kind": self.kind, "classes": int(self.sums.shape[0]), "features": self.n_features,
                "cosine": self.cosine, "online": self.online,
                "inner": self.inner.spec() if self.inner is not None else None}

    def adapt(self, exp) -> bool:
        changed = super().adapt(exp)
        grow = max(exp.head_size, self.n_classes) - self.sums.shape[0]
        if grow > 0:
            self.sums = torch.cat([self.sums, self.sums.new_zeros(grow, self.n_features)])
            self.counts = torch.cat([self.counts, self.counts.new_zeros(grow)])
        return changed

    @torch.no_grad()
    def update(self, feats: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
               again: bool = False) -> None:
        if self.online:
            self.sums, self.counts = ncm_update(self.sums, self.counts, feats.flatten(1).float(),
                                                y.long(), self.cosine)
        super().update(feats, y, t, again)

    @torch.no_grad()
    def set_stats(self, feats: torch.Tensor, y: torch.Tensor, classes=None) -> None:
        """Replace the statistics of ``classes`` (default: every class) by those of ``feats``."""
        sums, counts = ncm_update(torch.zeros_like(self.sums), torch.zeros_like(self.counts),
                                  feats.flatten(1).float(), y.long(), self.cosine)
        if classes is None:
            self.sums, self.counts = sums, counts
        else:
            idx = torch.as_tensor(list(classes), dtype=torch.long, device=self.sums.device)
            self.sums[idx], self.counts[idx] = sums[idx], counts[idx]

    def forward(self, feats: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.inner is not None:
            return self.inner(feats, task_ids)
        means, known = ncm_means(self.sums, self.counts, self.cosine)
        return ncm_scores(feats.flatten(1).float(), means, known, self.cosine)


def make_head(spec: dict, in_features: int) -> Head:
    """Rebuild a head from :meth:`Head.spec` (plain values, as stored in checkpoints)."""
    kind = spec.get("kind")
    if kind == "single":
        return IncrementalClassifier(in_features, int(spec["sizes"][0]))
    if kind == "multi":
        return MultiHeadClassifier(in_features, [int(s) for s in spec["sizes"]])
    if kind == "blocks":
        return BlockHead(spec["block_in"], [int(s) for s in spec["sizes"]], spec["route"])
    if kind == "bias":
        return BiasHead(make_head(spec["inner"], in_features), int(spec["new_from"]))
    if kind == "nearest-mean":
        inner = make_head(spec["inner"], in_features) if spec.get("inner") else None
        return NearestMeanHead(inner, int(spec["features"]), int(spec["classes"]),
                               bool(spec["cosine"]), bool(spec["online"]))
    from . import gradient_free  # built on Head, so imported here

    if kind in gradient_free.KINDS:
        return gradient_free.from_spec(spec, lambda inner: make_head(inner, in_features))
    raise ValueError(f"unknown head kind {kind!r}")

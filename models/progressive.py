"""Progressive Neural Networks (Rusu et al. 2016, "Progressive Neural Networks",
arXiv:1606.04671): a new column per task, earlier columns frozen, and lateral adapters that
feed every earlier column's activations into the new column's hidden layers.

A column is the model's own backbone (mlp or convnet), cut into stages: a stage starts at a
Linear or Conv2d layer and runs through the parameter-free modules after it (ReLU, pooling,
Flatten); what comes before the first such layer (Flatten, input pooling) is the column's
prefix. Hidden stage i >= 1 of column k receives, from the outputs of stage i - 1 of every
earlier column j < k, the adapter of the paper's equation 2 ("Adapters", section 2):

    h_i^k = f( W_i^k h_{i-1}^k + U_i^k sigma( V_i^k [alpha_i^{k:1} h_{i-1}^1, ..., alpha_i^{k:k-1} h_{i-1}^{k-1}] ) ),

a learned scalar alpha per earlier column (initialised to 1), V a projection of the
concatenated activations (a 1x1 convolution for convolutional stages, as the paper has it)
followed by sigma = ReLU, and U of the same kind as W (the same kernel and padding for a
convolution, no bias: W has one). V projects onto r dimensions: the own column's input
channels for a convolution; for a Linear stage ``min(own input width, own output width)`` (so
the projection after a convnet's Flatten costs hundreds, not millions, of weights: the paper's
dimensionality reduction). The first stage reads the input, so it has no adapter.

Columns after the first may be narrower (``width_ratio``: the model's width arguments scaled,
at least one unit each), for parameter efficiency; the features of column k are its last stage's
output, and the head (:class:`edgelll.models.heads.BlockHead`, routed by task id) reads each
task's own column. Training column k touches nothing of columns 0..k-1: they and their adapters
are frozen (``requires_grad`` False) when it is added, so their outputs stay bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

_MAIN = (nn.Linear, nn.Conv2d)


def scaled_args(name: str, args: dict, ratio: float) -> dict:
    """The model's arguments with every width (``hidden``, ``channels``) scaled by ``ratio``."""
    out = dict(args)
    for key in ("hidden", "channels"):
        if key in out:
            v = out[key]
            scale = lambda w: max(1, int(round(int(w) * ratio)))  # noqa: E731
            out[key] = tuple(scale(w) for w in v) if isinstance(v, (tuple, list)) else scale(v)
    return out


class Stage(nn.Module):
    """A Linear or Conv2d layer and the parameter-free modules after it."""

    def __init__(self, main: nn.Module, rest: list[nn.Module]) -> None:
        super().__init__()
        self.main = main
        self.rest = nn.Sequential(*rest)


class Column(nn.Module):
    def __init__(self, prefix: list[nn.Module], stages: list[Stage]) -> None:
        super().__init__()
        self.prefix = nn.Sequential(*prefix)
        self.stages = nn.ModuleList(stages)


def to_column(backbone: nn.Sequential) -> Column:
    """Cut a backbone (``nn.Sequential``) into its prefix and stages."""
    prefix, stages, current = [], [], None
    for m in backbone:
        if isinstance(m, _MAIN):
            current = [m, []]
            stages.append(current)
        elif any(p.numel() for p in m.parameters()):
            raise ValueError(f"progressive columns take Linear and Conv2d layers with "
                             f"parameter-free modules between them, not {type(m).__name__}")
        elif current is None:
            prefix.append(m)
        else:
            current[1].append(m)
    if not stages:
        raise ValueError("a progressive column needs at least one Linear or Conv2d layer")
    return Column(prefix, [Stage(main, rest) for main, rest in stages])


class Adapter(nn.Module):
    """The lateral input of one stage of a column from the earlier columns (equation 2)."""

    def __init__(self, main: nn.Module, in_sizes: list[int], own_in: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(len(in_sizes)))
        total = sum(in_sizes)
        if isinstance(main, nn.Conv2d):
            self.v = nn.Conv2d(total, own_in, 1)
            self.u = nn.Conv2d(own_in, main.out_channels, main.kernel_size, main.stride,
                               main.padding, bias=False)
        else:
            r = min(own_in, main.out_features)
            self.v = nn.Linear(total, r)
            self.u = nn.Linear(r, main.out_features, bias=False)

    def forward(self, earlier: list[torch.Tensor]) -> torch.Tensor:
        scaled = torch.cat([a * h for a, h in zip(self.alpha, earlier)], dim=1)
        return self.u(torch.relu(self.v(scaled)))


def _sizes(column: Column, x: torch.Tensor) -> list[int]:
    """Channels (4-D) or widths (2-D) of every stage's output for an input like ``x``."""
    sizes, h = [], column.prefix(x)
    for stage in column.stages:
        h = stage.rest(stage.main(h))
        sizes.append(int(h.shape[1]))
    return sizes


class Progressive(nn.Module):
    """Columns with lateral adapters; ``forward`` gives every column's features side by side."""

    def __init__(self, first: nn.Sequential, input_shape: tuple[int, ...],
                 width_ratio: float = 1.0) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.width_ratio = float(width_ratio)
        self.columns = nn.ModuleList([to_column(first)])
        self.adapters = nn.ModuleList([nn.ModuleList()])  # adapters[k][i-1]: column k, stage i
        self.widths = [self._probe(self.columns[0])[-1]]

    def _probe(self, column: Column) -> list[int]:
        ref = next(column.parameters())
        with torch.no_grad():
            return _sizes(column, torch.zeros(1, *self.input_shape, device=ref.device,
                                              dtype=ref.dtype))

    def add(self, backbone: nn.Sequential) -> None:
        """A new column (built at this column's width), adapters from every earlier one; the
        earlier columns and their adapters stop learning."""
        for p in self.parameters():  # frozen: no gradient kept (or counted) either
            p.requires_grad_(False)
            p.grad = None
        column = to_column(backbone)
        if len(column.stages) != len(self.columns[0].stages):
            raise ValueError("every progressive column needs the same number of layers")
        mine = self._probe(column)
        earlier = [self._probe(c) for c in self.columns]
        adapters = nn.ModuleList(
            Adapter(column.stages[i].main, [s[i - 1] for s in earlier], mine[i - 1])
            for i in range(1, len(column.stages)))
        ref = next(self.columns[0].parameters())
        self.columns.append(column.to(ref.device, ref.dtype))
        self.adapters.append(adapters.to(ref.device, ref.dtype))
        self.widths.append(mine[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[list[torch.Tensor]] = []
        for k, column in enumerate(self.columns):
            h, hs = column.prefix(x), []
            for i, stage in enumerate(column.stages):
                pre = stage.main(h)
                if k and i:
                    pre = pre + self.adapters[k][i - 1]([outs[j][i - 1] for j in range(k)])
                h = stage.rest(pre)
                hs.append(h)
            outs.append(hs)
        return torch.cat([hs[-1] for hs in outs], dim=1)

    def column_params(self) -> list[int]:
        """Parameters of every column, its adapters included."""
        return [sum(p.numel() for p in c.parameters()) + sum(p.numel() for p in a.parameters())
                for c, a in zip(self.columns, self.adapters)]


"""Net2Net growth of the mlp and convnet models (Chen, Goodfellow & Shlens 2016, arXiv:1511.05641).

- :func:`grow_wider` is Net2WiderNet (section 2.1): hidden layer ``layer`` gets ``new_width``
  units by a random mapping g (g(j) = j for the old units, then uniform picks); a new unit copies
  the incoming weights and bias of unit g(j), and the next layer's weights reading unit j are the
  old ones of g(j) divided by the copy count |{j' : g(j') = g(j)}| (equation 6), so the sum over
  the copies is the old weight and the function is unchanged. After the last conv the next layer
  reads the flattened map, so every unit owns a block of H*W columns. A BatchNorm after the layer
  is copied per unit, its running statistics too.
- :func:`grow_deeper` is Net2DeeperNet (section 2.2): an identity layer (Linear: the identity
  matrix; Conv2d: a 3x3 kernel with a 1 at the centre, padding 1) and a ReLU after a hidden
  layer's ReLU; ReLU outputs are >= 0, so the ReLU is the identity on them. With BatchNorm the
  inserted BatchNorm undoes its own normalisation, as the paper says: running mean mu and variance
  s^2 of the inserted layer's input, scale sqrt(s^2 + eps) and shift mu; mu and s^2 are measured
  on ``data`` when given (then training-mode batch statistics are close too), else 0 and 1 (exact
  in eval mode only).

Both return a :class:`Growth` that says how every parameter-shaped tensor follows. Gradients of
the grown network at the mapped weights (tied copies): a copy's incoming weights, bias and
BatchNorm scale/shift see 1/c of the old gradient (the next layer reads it through w/c), and a
divided next-layer weight sees the old gradient unchanged (it reads the same activation). So
:func:`map_like` scales by kind: ``"value"`` (weights, EWC/MAS anchors) copies rows and divides
columns by c; ``"grad"`` (Adam's first moment, SGD momentum, MAS importances = mean |grad|)
divides rows by c and copies columns; ``"grad2"`` (Adam's second moment, the EWC Fisher = mean
grad^2) divides rows by c^2 and copies columns; ``"copy"`` copies both (SI's big omega: under SGD
its path integral g * dtheta and its denominator dtheta^2 both scale by 1/c^2 on rows, by 1 on
columns). Mapped this way, optimizer state and importances are what the grown network itself
would have accumulated (tests/test_net2net.py checks the Fisher and the next Adam/SGD step). Note
the columns: a divided weight's moments are not divided, since its gradient is not. One could
instead keep the EWC penalty's value at the mapped weights (rows' Fisher / c, columns' * c); the
Fisher the grown network has is kept instead, the one that recomputing it would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from edgelll.errors import ConfigError

from .base import EdgeModel
from .heads import BiasHead, IncrementalClassifier, MultiHeadClassifier, NearestMeanHead

GROWABLE = ("mlp", "mlp-small", "convnet")
# Powers of the copy count c that divide rows (the layer's units) and columns (the next layer).
KINDS = {"value": (0, 1), "grad": (1, 0), "grad2": (2, 0), "copy": (0, 0)}
OPTIMIZER_KINDS = {"exp_avg": "grad", "momentum_buffer": "grad", "exp_avg_sq": "grad2",
                   "max_exp_avg_sq": "grad2"}


@dataclass(frozen=True)
class Growth:
    """One growth step: hidden layer ``layer`` went from ``old_width`` to ``new_width`` units, new
    unit j copying old unit ``index[j]``, old unit i now having ``counts[i]`` copies. ``rows`` are
    the parameters and buffers indexed by the layer's units (dim 0), ``cols`` the next layer's
    weights reading them (dim 1, ``block`` columns per unit). A deepening renames the layers after
    the insertion (``renamed``, old name to new) and ``added`` the inserted layer's tensors."""

    op: str
    layer: int
    old_width: int
    new_width: int
    index: Tensor
    counts: Tensor
    rows: tuple[str, ...] = ()
    cols: tuple[str, ...] = ()
    block: int = 1
    renamed: dict[str, str] = field(default_factory=dict)
    added: tuple[str, ...] = ()


def _backbone(model) -> nn.Sequential:
    name = getattr(model, "name", type(model).__name__)
    if not isinstance(model, EdgeModel) or model.name not in GROWABLE:
        raise ConfigError(f"Net2Net grows the {', '.join(GROWABLE)} models, not {name!r}")
    if not isinstance(model.backbone, nn.Sequential):
        raise ConfigError(f"Net2Net grows a single {name} backbone, not one with task columns")
    return model.backbone


def _hidden(seq: nn.Sequential) -> list[int]:
    return [i for i, m in enumerate(seq) if isinstance(m, (nn.Linear, nn.Conv2d))]


def _pick(model, layer, what: str) -> tuple[nn.Sequential, list[int], int]:
    seq = _backbone(model)
    hidden = _hidden(seq)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(hidden):
        raise ConfigError(f"cannot {what} hidden layer {layer!r}: this {model.name} has "
                          f"{len(hidden)} hidden layers, numbered 0 to {len(hidden) - 1}")
    return seq, hidden, hidden[layer]


def _width(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _like(m: nn.Module, **kw) -> nn.Module:
    """A new module of ``m``'s type, settings, device and dtype, with the sizes in ``kw``; Linear
    and Conv2d weights are left uninitialised (the caller writes every entry: no wasted init)."""
    p = m.weight
    if isinstance(m, nn.Linear):
        args = {"in_features": m.in_features, "out_features": m.out_features, **kw}
        new = _uninitialised(lambda: nn.Linear(1, 1, bias=m.bias is not None), args,
                             (args["out_features"], args["in_features"]), p)
    elif isinstance(m, nn.Conv2d):
        args = {"in_channels": m.in_channels, "out_channels": m.out_channels, **kw}
        new = _uninitialised(
            lambda: nn.Conv2d(m.groups, m.groups, kernel_size=m.kernel_size, stride=m.stride,
                              padding=m.padding, dilation=m.dilation, groups=m.groups,
                              bias=m.bias is not None, padding_mode=m.padding_mode),
            args, (args["out_channels"], args["in_channels"] // m.groups, *m.kernel_size), p)
    else:
        new = type(m)(kw["num_features"], eps=m.eps, momentum=m.momentum, device=p.device,
                      dtype=p.dtype)
    return new.requires_grad_(p.requires_grad).train(m.training)


def _uninitialised(small, sizes: dict, shape: tuple[int, ...], like: Tensor) -> nn.Module:
    """``small()`` (a module at the smallest size, built on the CPU so its init costs nothing)
    resized to ``sizes``, with uninitialised storage of ``like``'s device and dtype. Its init's
    draws are put back, so a growth leaves torch's random stream where it was.
    ``torch.nn.utils.skip_init`` does the same through the meta device, whose first use imports
    torch's reference ops: half a second inside the first growth of a run."""
    with torch.random.fork_rng(devices=[]):
        new = small()
    for key, value in sizes.items():
        setattr(new, key, value)
    new.weight = nn.Parameter(torch.empty(shape, device=like.device, dtype=like.dtype))
    if new.bias is not None:
        new.bias = nn.Parameter(torch.empty(shape[0], device=like.device, dtype=like.dtype))
    return new


def _head_linears(head) -> list[tuple[nn.Module, str, int | None]]:
    """(holder, attribute, list index) of every Linear over the features; other heads refused."""
    if isinstance(head, BiasHead):
        return _head_linears(head.inner)
    if isinstance(head, IncrementalClassifier):
        return [(head, "linear", None)]
    if isinstance(head, MultiHeadClassifier):
        return [(head.heads, "", i) for i in range(len(head.heads))]
    if isinstance(head, NearestMeanHead):
        raise ConfigError("cannot widen the last hidden layer under a 'nearest-mean' head: its "
                          "feature distances count a copied unit once per copy, so no mapping "
                          "keeps them (widen an earlier layer)")
    raise ConfigError(f"cannot widen the last hidden layer under a {head.kind!r} head: it does not "
                      f"read the features through linear weights (widen an earlier layer)")


def _names(model: nn.Module) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _put(holder, attr: str, i: int | None, new: nn.Module) -> None:
    if i is None:
        setattr(holder, attr, new)
    else:
        holder[i] = new


@torch.no_grad()
def grow_wider(model: EdgeModel, layer: int, new_width: int, noise: float = 0.0,
               generator: torch.Generator | None = None) -> Growth:
    """Net2WiderNet on hidden layer ``layer`` (0-based among the Linear/Conv2d layers), in place.
    ``noise`` > 0 adds Gaussian noise of ``noise`` times the weights' std to the new units'
    incoming weights only (the paper's symmetry breaking); the function is kept before it."""
    seq, hidden, k = _pick(model, layer, "widen")
    old_mod = seq[k]
    old = _width(old_mod)
    if isinstance(new_width, bool) or not isinstance(new_width, int) or new_width <= old:
        raise ConfigError(f"hidden layer {layer} has {old} units: new_width must be an integer "
                          f"larger than {old}, got {new_width!r}")
    if layer + 1 < len(hidden):
        targets = [(seq, "", hidden[layer + 1])]
    else:
        targets = _head_linears(model.head)
    names = _names(model)
    dev = old_mod.weight.device
    g = torch.cat([torch.arange(old), torch.randint(old, (new_width - old,), generator=generator)])
    counts = torch.bincount(g, minlength=old)
    g, counts = g.to(dev), counts.to(dev)
    rows, cols = [], []

    key = "out_features" if isinstance(old_mod, nn.Linear) else "out_channels"
    kw = {key: new_width}
    new_mod = _like(old_mod, **kw)
    new_mod.weight.copy_(old_mod.weight[g])
    if noise > 0 and new_width > old:
        extra = torch.randn(new_mod.weight[old:].shape, generator=generator).to(new_mod.weight)
        new_mod.weight[old:] += noise * old_mod.weight.std() * extra
    rows.append(names[id(old_mod)] + ".weight")
    if old_mod.bias is not None:
        new_mod.bias.copy_(old_mod.bias[g])
        rows.append(names[id(old_mod)] + ".bias")
    norm = seq[k + 1] if isinstance(seq[k + 1], (nn.BatchNorm1d, nn.BatchNorm2d)) else None
    if norm is not None:
        new_norm = _like(norm, num_features=new_width)
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(new_norm, key).copy_(getattr(norm, key)[g])
            rows.append(f"{names[id(norm)]}.{key}")
        new_norm.num_batches_tracked.copy_(norm.num_batches_tracked)

    divide = counts[g].to(old_mod.weight.dtype)
    block = 1
    swaps = []
    for holder, attr, i in targets:
        nxt = holder[i] if attr == "" else getattr(holder, attr)
        cols.append(names[id(nxt)] + ".weight")
        if isinstance(nxt, nn.Conv2d):
            new_nxt = _like(nxt, in_channels=new_width)
            new_nxt.weight.copy_(nxt.weight[:, g] / divide.view(1, -1, 1, 1))
        else:
            block = nxt.in_features // old  # H*W columns per channel after the flatten
            idx = (g.view(-1, 1) * block + torch.arange(block, device=dev)).flatten()
            new_nxt = _like(nxt, in_features=new_width * block)
            new_nxt.weight.copy_(nxt.weight[:, idx] / divide.repeat_interleave(block))
        if nxt.bias is not None:
            new_nxt.bias.copy_(nxt.bias)
        swaps.append((holder, attr or None, i, new_nxt))

    seq[k] = new_mod
    if norm is not None:
        seq[k + 1] = new_norm
    for holder, attr, i, new_nxt in swaps:
        _put(holder, attr, i, new_nxt)
    if layer + 1 == len(hidden):
        model.feat_dim = new_width
        for head in model.head.chain():
            if hasattr(head, "in_features"):
                head.in_features = new_width
    _respec(model)
    return Growth("wider", layer, old, new_width, g, counts, tuple(rows), tuple(cols), block)


@torch.no_grad()
def grow_deeper(model: EdgeModel, after_layer: int, data: Tensor | None = None) -> Growth:
    """Net2DeeperNet: an identity layer of the same width (and a ReLU) after hidden layer
    ``after_layer``'s ReLU (and its pooling), in place. ``data`` (samples as stored) sets an
    inserted BatchNorm's statistics to those of its input; see the module docstring."""
    seq, hidden, k = _pick(model, after_layer, "deepen after")
    mod = seq[k]
    width = _width(mod)
    at = k + 1
    while at < len(seq) and isinstance(seq[at], (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU,
                                                 nn.MaxPool2d)):
        at += 1
    p = mod.weight
    if isinstance(mod, nn.Linear):
        new = _uninitialised(lambda: nn.Linear(1, 1), {"in_features": width, "out_features": width},
                             (width, width), p)
        new.weight.copy_(torch.eye(width))
    else:
        new = _uninitialised(lambda: nn.Conv2d(1, 1, 3, padding=1),
                             {"in_channels": width, "out_channels": width}, (width, width, 3, 3), p)
        new.weight.zero_()
        new.weight[:, :, 1, 1] = torch.eye(width)
    new.bias.zero_()
    inserted: list[nn.Module] = [new.requires_grad_(p.requires_grad)]
    if isinstance(seq[k + 1], (nn.BatchNorm1d, nn.BatchNorm2d)):
        norm = _like(seq[k + 1], num_features=width)
        if data is not None:
            was = model.training
            model.eval()
            y = seq[:at](model.preprocess(torch.as_tensor(data, device=p.device)))
            model.train(was)
            dims = [0] + list(range(2, y.dim()))
            norm.running_mean.copy_(y.mean(dims))
            norm.running_var.copy_(y.var(dims, unbiased=False))
        norm.weight.copy_((norm.running_var + norm.eps).sqrt())
        norm.bias.copy_(norm.running_mean)
        inserted.append(norm)
    inserted.append(nn.ReLU())
    for m in inserted:
        m.train(mod.training)
    before = _named_tensors(model)
    model.backbone = nn.Sequential(*seq[:at], *inserted, *seq[at:])
    after = {id(t): n for n, t in _named_tensors(model).items()}
    renamed = {n: after[id(t)] for n, t in before.items() if after[id(t)] != n}
    prefix = tuple(f"backbone.{at + i}." for i in range(len(inserted)))
    added = tuple(n for n in after.values() if n.startswith(prefix))
    _respec(model)
    eye = torch.arange(width, device=p.device)
    return Growth("deeper", after_layer, width, width, eye, torch.ones_like(eye),
                  renamed=renamed, added=added)


def _named_tensors(model: nn.Module) -> dict[str, Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _respec(model: EdgeModel) -> None:
    """Write the grown shape into the model's arguments, so that its spec rebuilds it."""
    seq = model.backbone
    norm = any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in seq)
    linear = tuple(m.out_features for m in seq if isinstance(m, nn.Linear))
    if model.name in ("mlp", "mlp-small"):
        pool = next((m.kernel_size for m in seq if isinstance(m, nn.AvgPool2d)), 1)
        model.name, model.args = "mlp", {"hidden": linear, "pool": int(pool)}
    else:
        convs = [i for i, m in enumerate(seq) if isinstance(m, nn.Conv2d)]
        ends = convs[1:] + [next(i for i, m in enumerate(seq) if isinstance(m, nn.Flatten))]
        pools = tuple(any(isinstance(m, nn.MaxPool2d) for m in seq[a:b])
                      for a, b in zip(convs, ends))
        model.args = {"channels": tuple(seq[i].out_channels for i in convs),
                      "hidden": linear[0] if len(linear) == 1 else linear, "pools": pools}
    if norm:
        model.args["norm"] = True


def map_like(tensors: dict[str, Tensor], growth: Growth, kind: str = "value") -> dict[str, Tensor]:
    """``tensors`` (by parameter or buffer name, shaped like them: importances, anchors, moments)
    as they follow ``growth``; ``kind`` says how they scale (see the module docstring)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r} of parameter-shaped tensors; choose from: "
                          f"{', '.join(KINDS)}")
    return {growth.renamed.get(n, n): _map(n, t, growth, kind) for n, t in tensors.items()}


def _map(name: str, t: Tensor, growth: Growth, kind: str) -> Tensor:
    row_pow, col_pow = KINDS[kind]
    g = growth.index.to(t.device)
    c = growth.counts.to(t.device, t.dtype)[g]
    if name in growth.rows:
        out = t[g]
        return out / c.view(-1, *[1] * (t.dim() - 1)) ** row_pow if row_pow else out
    if name in growth.cols:
        b = growth.block
        idx = (g.view(-1, 1) * b + torch.arange(b, device=t.device)).flatten()
        out = t[:, idx]
        c = c.repeat_interleave(b).view(1, -1, *[1] * (t.dim() - 2))
        return out / c ** col_pow if col_pow else out
    return t


def map_optimizer_state(optimizer, before: dict[str, Tensor], model: nn.Module,
                        growth: Growth) -> None:
    """Point ``optimizer`` (edgelll.optim or torch.optim Adam/SGD) at ``model``'s parameters after
    ``growth``, in place, its state mapped like the parameters' gradients: Adam's first moment and
    SGD's momentum as ``"grad"``, Adam's second moment as ``"grad2"``, the step count copied. The
    layer a deepening adds joins the first group with no state (as a new parameter would), at
    its place in the model's order.
    ``before`` is ``dict(model.named_parameters())`` taken before the growth."""
    name_of = {id(p): n for n, p in before.items()}
    now = dict(model.named_parameters())
    state = {}
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            name = name_of.get(id(p))
            q = p if name is None else now[growth.renamed.get(name, name)]
            params.append(q)
            old = optimizer.state.get(p)
            if old:
                state[q] = {key: _map_state(key, v, name, growth) for key, v in old.items()}
        group["params"] = params
    # the added layer joins where the model has it, not at the end: the optimizer keeps the
    # model's order, which a checkpoint's state (stored by position) is restored in
    first = optimizer.param_groups[0]
    added = [now[n] for n in growth.added if n in now and now[n].requires_grad]
    members = {id(p) for p in first["params"] + added}
    in_model = [p for p in model.parameters() if id(p) in members]
    placed = {id(p) for p in in_model}
    first["params"] = in_model + [p for p in first["params"] if id(p) not in placed]
    optimizer.state.clear()
    optimizer.state.update(state)


def _map_state(key: str, value, name: str | None, growth: Growth):
    if not torch.is_tensor(value) or value.dim() == 0 or name is None:
        return value.clone() if torch.is_tensor(value) else value
    if key not in OPTIMIZER_KINDS:
        raise ConfigError(f"optimizer state {key!r} has no Net2Net mapping (known: "
                          f"{', '.join(OPTIMIZER_KINDS)})")
    return _map(name, value, growth, OPTIMIZER_KINDS[key])

"""Streams of experiences built from a data set, in the three scenarios of van de Ven & Tolias
(2019, arXiv:1904.07734).

- ``split``: the classes, in a natural, seeded-random or given order, divided into tasks.
- ``permuted``: every task is the whole data set under its own fixed random pixel permutation
  (task 0 keeps the identity).
- ``rotated``: every task is the whole data set rotated by ``180 * t / tasks`` degrees.
- ``fscil``: a base session, then few-shot sessions of new classes (:mod:`edgelll.fscil`).

Scenario decides the labels: ``class`` uses one growing label space (global class index, no task
id at test), ``task`` labels within the task and gives the task id (multi-head), ``domain`` labels
within the task with a shared head and no task id.

Data stays in its source dtype (uint8 images) as tensors on the compute device; normalisation
constants are computed once on the training set and handed to the model, whose preprocessing
applies them (one fused affine op per batch). :meth:`Stream.label_map` is the class map and task
routing the model's spec carries, so a trained model maps its outputs back to the data set's
labels without the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .data import Dataset
from .errors import ConfigError, DataError
from .batch import Batch
from .fscil import FscilSpec, fscil_experiences


DIGITS = [str(d) for d in range(10)]
CLASS_NAMES = {"digits": DIGITS, "mnist": DIGITS,
               "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                 "Shirt", "Sneaker", "Bag", "Ankle boot"]}


@dataclass(eq=False)
class Experience:
    index: int
    task_id: int
    classes: tuple[int, ...]  # original data-set labels in this experience
    head_size: int  # output units a single head needs once this experience is learned
    label_offset: int  # global label of local label 0 (class scenario)
    x_test: torch.Tensor
    y_test: torch.Tensor
    _train: callable = field(repr=False, default=None)
    train_bytes: int = 0

    @property
    def n_local_classes(self) -> int:
        return len(self.classes)

    def train_data(self) -> Batch:
        """The experience's training set (built on demand: permuted/rotated copies are large)."""
        return self._train()

    def test_batch(self) -> Batch:
        t = torch.full_like(self.y_test, self.task_id)
        return Batch(self.x_test, self.y_test, t)


@dataclass(eq=False)
class Stream:
    experiences: list[Experience]
    scenario: str
    input_shape: tuple[int, ...]
    dtype: torch.dtype
    mean: float
    std: float
    class_order: list[int]
    dataset_name: str
    names: tuple[str, ...] | None = None  # the data set's own class names (Omniglot's), by label

    @property
    def uses_task_ids(self) -> bool:
        return self.scenario == "task"

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self.input_shape)) * torch.empty((), dtype=self.dtype).element_size()

    def label_map(self) -> dict:
        """Plain values: which data-set labels each task holds (``tasks``, in local-unit order)
        and, in the class scenario, the label of every output unit (``units``). In the task
        scenario unit j of task t is ``tasks[t][j]``; in the domain scenario units are local."""
        tasks = [list(e.classes) for e in self.experiences]
        out = {"scenario": self.scenario, "tasks": tasks, "dataset": self.dataset_name}
        if self.scenario == "class":
            out["units"] = [c for e in self.experiences for c in e.classes]
        names = self.names or CLASS_NAMES.get(self.dataset_name)
        if names is not None:
            out["names"] = {str(c): names[c] for c in self.class_order if c < len(names)}
        return out

    def __len__(self) -> int:
        return len(self.experiences)


def _class_order(spec: str, classes: list[int], seed: int) -> list[int]:
    if spec == "natural":
        return list(classes)
    if spec == "random":
        rng = np.random.default_rng(seed)
        return [int(c) for c in rng.permutation(classes)]
    try:
        order = [int(c) for c in str(spec).split(",")]
    except ValueError:
        raise ConfigError(f"class order {spec!r} must be natural, random or labels like 3,1,4") from None
    if sorted(order) != sorted(classes):
        missing = sorted(set(classes) - set(order))
        extra = sorted(set(order) - set(classes))
        raise ConfigError(f"class order {spec!r} must name every training class once "
                          f"(missing {missing}, unknown or repeated {extra or 'none'})")
    return order


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cuda":  # pinned host memory makes the copy asynchronous
        return t.pin_memory().to(device, non_blocking=True)
    return t  # on CPU the tensor shares the array's memory: no copy


def make_stream(data: Dataset, stream: str, scenario: str, tasks: int, class_order: str = "natural",
                seed: int = 0, device: torch.device | str = "cpu",
                fscil: FscilSpec | None = None) -> Stream:
    """The experiences of ``stream``; ``fscil`` gives the sessions of the ``fscil`` stream (which
    ignores ``tasks``: it has ``fscil.sessions + 1`` experiences)."""
    device = torch.device(device)
    x_tr, x_te = _to_device(data.x_train, device), _to_device(data.x_test, device)
    y_tr, y_te = _to_device(data.y_train, device), _to_device(data.y_test, device)
    mean, std = _moments(data.x_train)
    order = _class_order(class_order, data.classes, seed)
    if stream == "split":
        exps = _split(x_tr, y_tr, x_te, y_te, order, tasks, scenario)
    elif stream == "fscil":
        if scenario != "class":
            raise ConfigError(f"the fscil stream is class-incremental (one growing head, no task "
                              f"id); use --scenario class, not {scenario}")
        exps, order = fscil_experiences(x_tr, y_tr, x_te, y_te, order, fscil or FscilSpec(),
                                              seed, data.base_pool)
    elif stream in ("permuted", "rotated"):
        exps = _transformed(stream, x_tr, y_tr, x_te, y_te, order, tasks, scenario, seed)
    else:
        raise ConfigError(f"unknown stream {stream!r}; choose from split, permuted, rotated, fscil")
    return Stream(exps, scenario, tuple(data.input_shape), x_tr.dtype, mean, std, order, data.name,
                  data.class_names)


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of all values, without a float64 copy of the data set
    (which would be 8x the uint8 images: 376 MB for MNIST)."""
    if x.dtype == np.uint8:
        flat, hist = torch.from_numpy(x.reshape(-1)), np.zeros(256, dtype=np.float64)
        for start in range(0, flat.numel(), 1 << 24):  # a histogram: exact, no float copy
            hist += torch.bincount(flat[start:start + (1 << 24)], minlength=256).numpy()
        values = np.arange(256, dtype=np.float64)
        n = hist.sum()
        mean = float((hist * values).sum() / n)
        var = float((hist * (values - mean) ** 2).sum() / n)
    else:
        flat = x.reshape(-1)
        total = total_sq = 0.0
        for start in range(0, flat.size, 1 << 22):
            chunk = flat[start:start + (1 << 22)].astype(np.float64)
            total += chunk.sum()
            total_sq += (chunk * chunk).sum()
        mean = total / flat.size
        var = max(0.0, total_sq / flat.size - mean * mean)
    return float(mean), float(var ** 0.5) or 1.0


def _labels(y: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    return lut[y]


def _split(x_tr, y_tr, x_te, y_te, order, tasks, scenario) -> list[Experience]:
    if tasks > len(order):
        raise ConfigError(f"cannot split {len(order)} classes into {tasks} tasks; use --tasks "
                          f"{len(order)} or fewer")
    groups = [[int(c) for c in g] for g in np.array_split(np.array(order), tasks)]
    n = max(order) + 1
    exps, seen = [], 0
    for t, group in enumerate(groups):
        lut = torch.full((n,), -1, dtype=torch.long, device=y_tr.device)
        for local, c in enumerate(group):
            lut[c] = (seen + local) if scenario == "class" else local
        tr = torch.isin(y_tr, torch.tensor(group, device=y_tr.device))
        te = torch.isin(y_te, torch.tensor(group, device=y_te.device))
        counts = torch.bincount(y_tr[tr], minlength=n)[group]
        if int(counts.min()) == 0:
            empty = [c for c, k in zip(group, counts.tolist()) if k == 0]
            raise DataError(f"task {t} has no training samples of class(es) {empty}; give a "
                            f"--class-order without them or use other data")
        if not bool(te.any()):  # it would score 0 and drag ACC and BWT down for no reason
            raise DataError(f"task {t} (classes {group}) has no test samples, so it cannot be "
                            f"scored; add test samples of those classes or give a --class-order "
                            f"without them")
        idx = torch.nonzero(tr).flatten()
        head = seen + len(group) if scenario == "class" else max(len(g) for g in groups[: t + 1])
        exps.append(Experience(
            index=t, task_id=t, classes=tuple(int(c) for c in group), head_size=head,
            label_offset=seen if scenario == "class" else 0,
            x_test=x_te[te], y_test=_labels(y_te[te], lut),
            _train=_subset(x_tr, y_tr, idx, lut, t),
            train_bytes=int(idx.numel()) * (x_tr[0].nbytes + 16)))
        seen += len(group)
    return exps


def _subset(x, y, idx, lut, t):
    def build() -> Batch:
        yy = _labels(y[idx], lut)
        return Batch(x[idx], yy, torch.full_like(yy, t))
    return build


def _transformed(kind, x_tr, y_tr, x_te, y_te, order, tasks, scenario, seed) -> list[Experience]:
    n_cls = len(order)
    rank = torch.full((max(order) + 1,), -1, dtype=torch.long, device=y_tr.device)
    rank[torch.tensor(order, device=y_tr.device)] = torch.arange(n_cls, device=y_tr.device)
    gen = torch.Generator().manual_seed(seed)
    exps = []
    for t in range(tasks):
        if kind == "permuted":
            perm = torch.arange(x_tr[0].numel()) if t == 0 else torch.randperm(x_tr[0].numel(), generator=gen)
            fn = _permute(perm.to(x_tr.device))
        else:
            fn = _rotate(180.0 * t / tasks)
        offset = t * n_cls if scenario == "class" else 0
        lut = rank + offset
        exps.append(Experience(
            index=t, task_id=t, classes=tuple(order), head_size=offset + n_cls,
            label_offset=offset, x_test=fn(x_te), y_test=lut[y_te],
            _train=_mapped(fn, x_tr, y_tr, lut, t),
            train_bytes=x_tr.nbytes + 16 * y_tr.numel()))
    return exps


def _mapped(fn, x, y, lut, t):
    def build() -> Batch:
        yy = lut[y]
        return Batch(fn(x), yy, torch.full_like(yy, t))
    return build


def _permute(perm: torch.Tensor):
    def apply(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return flat[:, perm].reshape(x.shape)
    return apply


def _rotate(degrees: float):
    def apply(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise DataError("the rotated stream needs images shaped (N, C, H, W)")
        if degrees == 0:
            return x
        theta = torch.tensor(np.deg2rad(degrees), dtype=torch.float32)
        c, s = torch.cos(theta), torch.sin(theta)
        mat = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], device=x.device).expand(x.shape[0], 2, 3)
        out = []
        for chunk_x, chunk_m in zip(x.split(8192), mat.split(8192)):  # bounded temporary floats
            grid = torch.nn.functional.affine_grid(chunk_m, list(chunk_x.shape), align_corners=False)
            img = torch.nn.functional.grid_sample(chunk_x.float(), grid, align_corners=False)
            out.append(img.round().clamp(0, 255).to(x.dtype) if not x.is_floating_point() else img)
        return torch.cat(out)
    return apply

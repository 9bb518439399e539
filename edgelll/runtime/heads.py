"""Heads that learn on the device in numpy, over the features of a frozen extractor.

One small interface, so that later gradient-free heads plug in: ``scores(feats, task_ids)``
``(N, C)``, ``learn(feats, y, task_ids)`` on data-set labels, ``add_class(feats, label, task)``
for a class the head lacks, and ``to_arrays()`` (the dict :func:`edgelll.runtime.format.save_head`
writes; :func:`head_from_arrays` reads it back bit for bit). Rows carry ``labels`` (the data-set
label of each row) and ``tasks`` (each row's task, -1: any task); given task ids, rows of other
tasks score -inf, so a multi-head model answers within the sample's task.

- :class:`NCMHead`: nearest class mean (Mensink et al. 2013), the closed-form rule of
  ``edgelll/runtime/rules.py`` (the same function training runs on torch tensors); a new class
  appends its sums and counts.
- :class:`LinearHead`: ``W phi + b``, learning by one plain softmax cross-entropy gradient step
  per call (the gradient written out, ``dL/dz = softmax(z) - onehot(y)``, no autograd). A new
  class joins by weight imprinting (Qi et al. 2018, "Low-Shot Learning with Imprinted Weights",
  arXiv:1712.07136, section 3.2: the row is the L2-normalised mean of the L2-normalised features).
  The paper's classifier is normalised (cosine scores), a trained head is not, so the row's
  length is ours to choose. Scaled to the mean norm of the existing rows with their mean bias, it
  took every prediction on a digits run (ReLU features all lie in one orthant, so their mean
  direction is close to every sample's); instead the row gets the smallest length at which every
  shot is predicted as the new class (plus 1%), and the mean bias (:meth:`LinearHead.imprint`).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .rules import ncm_means, ncm_scores, ncm_update, normalize_rows


class Head:
    kind = ""
    learns = ""  # "closed-form" | "gradient"

    def __init__(self, labels, tasks, names: dict | None = None) -> None:
        self.labels = np.asarray(labels, dtype=np.int64).copy()
        self.tasks = np.asarray(tasks, dtype=np.int64).copy()
        self.names = {int(k): str(v) for k, v in (names or {}).items()}
        self._index()

    def _index(self) -> None:
        # Labels unique, small and no task routing: a label finds its row in one table look-up.
        self._table = None
        if (self.tasks == -1).all() and len(np.unique(self.labels)) == len(self.labels) and (
                len(self.labels) == 0 or (self.labels.min() >= 0 and self.labels.max() < 1 << 16)):
            # label + 1 indexes it; the first and last slots stay -1, so a clipped look-up of a
            # negative or too large label lands on -1
            self._table = np.full(int(self.labels.max(initial=-1)) + 3, -1, dtype=np.int64)
            self._table[self.labels + 1] = np.arange(len(self.labels))

    @property
    def n_features(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def routes_by_task(self) -> bool:
        return bool((self.tasks >= 0).any())

    def task_mask(self, task_ids) -> np.ndarray | None:
        """``(N, C)`` True where a row may answer for the sample (its task or any task)."""
        if task_ids is None or not self.routes_by_task:
            return None
        t = np.asarray(task_ids, dtype=np.int64).reshape(-1, 1)
        return (self.tasks[None, :] == t) | (self.tasks[None, :] == -1)

    def rows_of(self, y, task_ids=None) -> np.ndarray:
        """The row of each (label, task); a label the head lacks is a DataError."""
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        if self._table is not None and len(y) == 1:  # one sample, as a device learns: no array work
            row = int(self._table[min(max(int(y[0]) + 1, 0), len(self._table) - 1)])
            if row >= 0:
                return np.array([row], dtype=np.int64)
        if self._table is not None:
            rows = self._table.take(y + 1, mode="clip")
            ok = rows >= 0
        else:
            match = self.labels[None, :] == y[:, None]
            mask = self.task_mask(np.zeros(len(y), np.int64) if task_ids is None else task_ids)
            if mask is not None:
                match &= mask
            ok, rows = match.any(axis=1), np.argmax(match, axis=1)
        if not ok.all():
            bad = sorted(set(y[~ok].tolist()))
            raise DataError(f"label {', '.join(map(str, bad[:5]))} is not a class of this head "
                            f"(it has {self.describe()}); add a new class with learn_class(x_few, "
                            f"label) first")
        return rows

    def learn(self, feats, y, task_ids=None) -> None:
        """Learn from features ``(N, D)`` with data-set labels (and tasks), by the head's
        :meth:`learn_rows` on the rows those labels name."""
        feats = self.check_features(feats)
        self.learn_rows(feats, self.rows_of(y, task_ids))

    def learn_rows(self, feats: np.ndarray, rows: np.ndarray) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        labels = sorted(set(self.labels.tolist()))
        return (f"labels {', '.join(map(str, labels[:12]))}{', ...' if len(labels) > 12 else ''}"
                if labels else "no classes")

    def check_features(self, feats) -> np.ndarray:
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[1] != self.n_features:
            raise DataError(f"features shaped {feats.shape} do not fit this head, which takes "
                            f"(N, {self.n_features})")
        return feats if feats.dtype == np.float32 else feats.astype(np.float32)

    def _add_row(self, label: int, task: int, name: str | None) -> None:
        self.labels = np.append(self.labels, np.int64(label))
        self.tasks = np.append(self.tasks, np.int64(task))
        if name is not None:
            self.names[int(label)] = str(name)
        self._index()

    def _masked(self, scores: np.ndarray, task_ids) -> np.ndarray:
        mask = self.task_mask(task_ids)
        return scores if mask is None else np.where(mask, scores, np.float32(-np.inf))

    def _base_arrays(self) -> dict:
        return {"kind": self.kind, "labels": self.labels.copy(), "tasks": self.tasks.copy(),
                "names": dict(self.names)}


class NCMHead(Head):
    kind, learns = "ncm", "closed-form"

    def __init__(self, sums, counts, labels, tasks, cosine: bool = False, names=None) -> None:
        super().__init__(labels, tasks, names)
        self.sums = np.asarray(sums, dtype=np.float32).copy()
        self.counts = np.asarray(counts, dtype=np.float32).copy()
        self.cosine = bool(cosine)
        self._means = None

    @property
    def n_features(self) -> int:
        return int(self.sums.shape[1])

    def scores(self, feats, task_ids=None) -> np.ndarray:
        feats = self.check_features(feats)
        if self._means is None:  # the means change only when the head learns
            self._means = ncm_means(self.sums, self.counts, self.cosine)
        return self._masked(ncm_scores(feats, *self._means, self.cosine), task_ids)

    def learn_rows(self, feats: np.ndarray, rows: np.ndarray) -> None:
        if len(rows) == 1:
            # One sample: onehot^T phi is that row's features times 1.0, so adding them to the
            # row directly is bitwise what ncm_update gives (tested), without its ~30 us of
            # array-API dispatch.
            phi = normalize_rows(feats) if self.cosine else feats
            self.sums[rows[0]] += phi[0]
            self.counts[rows[0]] += np.float32(1.0)
        else:
            self.sums, self.counts = ncm_update(self.sums, self.counts, feats, rows, self.cosine)
        self._means = None

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        feats = self.check_features(feats)
        self.sums = np.concatenate([self.sums, np.zeros((1, self.n_features), np.float32)])
        self.counts = np.append(self.counts, np.float32(0))
        self._add_row(label, task, name)
        self.learn_rows(feats, np.full(len(feats), len(self.labels) - 1, dtype=np.int64))

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "sums": self.sums.copy(), "counts": self.counts.copy(),
                "cosine": self.cosine}


class LinearHead(Head):
    kind, learns = "linear", "gradient"

    def __init__(self, weight, bias, labels, tasks, names=None, lr: float = 0.01) -> None:
        super().__init__(labels, tasks, names)
        self.weight = np.asarray(weight, dtype=np.float32).copy()
        self.bias = np.asarray(bias, dtype=np.float32).copy()
        self.lr = float(lr)

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[1])

    def scores(self, feats, task_ids=None) -> np.ndarray:
        feats = self.check_features(feats)
        return self._masked(np.dot(feats, self.weight.T) + self.bias, task_ids)

    def learn(self, feats, y, task_ids=None, lr: float | None = None) -> None:
        """One gradient step of the mean softmax cross-entropy over the rows each sample may
        take (its task's): ``dL/dz = (softmax(z) - onehot(y)) / N``, ``dW = dz^T phi``."""
        feats = self.check_features(feats)
        rows = self.rows_of(y, task_ids)
        z = self.scores(feats, task_ids)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(rows)), rows] -= 1.0
        p /= np.float32(len(rows))
        step = np.float32(self.lr if lr is None else lr)
        # np.dot, not @: numpy's matmul costs about 8 us more on a (C, 1) @ (1, D) product
        self.weight -= step * np.dot(p.T, feats)
        self.bias -= step * p.sum(axis=0)

    def imprint(self, feats, task: int = -1) -> tuple[np.ndarray, np.float32]:
        """The imprinted row and bias for a new class from its features (module docstring):
        direction ``m = normalise(mean(normalise(phi)))``, bias the mean bias ``b``, and scale the
        smallest that makes every shot score the new class above the existing rows (of its
        task), with a 1% margin: ``s = 1.01 max_i (max_c z_c(phi_i) - b) / (m . phi_i)``."""
        feats = self.check_features(feats)
        direction = normalize_rows(normalize_rows(feats).mean(axis=0, keepdims=True))[0]
        bias = np.float32(self.bias.mean() if len(self.bias) else 0.0)
        norm = np.float32(np.linalg.norm(self.weight, axis=1).mean() if len(self.weight) else 1.0)
        if not len(self.weight):
            return direction * norm, bias
        t = None if task < 0 else np.full(len(feats), task)
        best = self._masked(feats @ self.weight.T + self.bias, t).max(axis=1)
        dots = np.maximum(feats @ direction, np.float32(1e-12))
        needed = np.float32(1.01) * ((best - bias) / dots).max()
        scale = needed if np.isfinite(needed) and needed > 0 else norm
        return (direction * scale).astype(np.float32), bias

    def add_class(self, feats, label: int, task: int = -1, name: str | None = None) -> None:
        row, bias = self.imprint(feats, task)
        self.weight = np.concatenate([self.weight, row[None, :]])
        self.bias = np.append(self.bias, bias).astype(np.float32)
        self._add_row(label, task, name)

    def to_arrays(self) -> dict:
        return {**self._base_arrays(), "weight": self.weight.copy(), "bias": self.bias.copy()}


def _gradient_free():
    from . import gradient_free  # it builds on Head, so it is imported when first needed

    return gradient_free


def head_from_arrays(head: dict, lr: float = 0.01) -> Head:
    """A head from :func:`edgelll.runtime.format.load_head`'s dict (or ``to_arrays()``)."""
    kind = head.get("kind")
    names = head.get("names") or {}
    try:
        if kind == "ncm":
            out = NCMHead(head["sums"], head["counts"], head["labels"], head["tasks"],
                          bool(head.get("cosine", False)), names)
            rows, width = out.sums.shape[0], out.counts.shape
        elif kind == "linear":
            out = LinearHead(head["weight"], head["bias"], head["labels"], head["tasks"], names, lr)
            rows, width = out.weight.shape[0], out.bias.shape
        elif kind in _gradient_free().KINDS:
            out = _gradient_free().from_arrays(head)
            rows, width = len(out.labels), _gradient_free().row_shape(out)
        else:
            raise DataError(f"unknown head kind {kind!r}; expected 'linear', 'ncm', "
                            f"'hebbian', 'competitive', 'neural-gas' or 'slda'")
    except KeyError as exc:
        raise DataError(f"the {kind} head lacks its {exc.args[0]!r} array; export it again") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"the {kind} head's settings do not fit ({exc}); export it again") from None
    if width != (rows,) or out.labels.shape != (rows,) or out.tasks.shape != (rows,):
        raise DataError(f"the {kind} head's arrays disagree on its number of rows; export it again")
    return out

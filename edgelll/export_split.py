"""Split exports: the head of a trained model as plain arrays (``edgelll.runtime.format``'s
head ``.npz``), so a device keeps the ONNX extractor frozen and learns in the head with numpy.

Every head variant becomes one of two kinds, rows indexed by output, each row with its data-set
label and its task (-1: any task):

- ``linear``: a single growing head as is; BiC's correction (Wu et al. 2019, arXiv:1905.13260,
  eq. 4: ``q = alpha * o + beta`` on the newest rows) folded into those rows,
  ``W' = alpha * W`` and ``b' = alpha * b + beta``, the same function exactly; ``multi`` heads
  (van de Ven & Tolias 2019, arXiv:1904.07734) stacked, each row tagged with its task;
  ``blocks`` (independent columns) as one linear map with zeros outside each block's slice.
- ``ncm``: nearest class mean (Mensink et al. 2013; iCaRL's nearest-mean-of-exemplars, Rebuffi
  et al. 2017, arXiv:1611.07725) as per-row feature sums and counts.
- the gradient-free kinds ``hebbian``, ``competitive``, ``neural-gas`` and ``slda``
  (``edgelll.models.gradient_free``) as their buffers and option values (``params``), the arrays
  :data:`edgelll.runtime.format.HEAD_ARRAYS` names; the device runs the same rules on them.

Each row also knows which output unit of the whole model it is (``units``, not saved), which is
how the split is checked against the whole graph.
"""

from __future__ import annotations

import numpy as np

from .runtime.format import HEAD_ARRAYS, units_to_labels
from .runtime.heads import head_from_arrays
from .runtime.rules import ncm_means, ncm_scores, ncm_update


def head_arrays(model) -> dict:
    """The model's head as a ``save_head`` dict plus ``units`` (each row's whole-model unit)."""
    head, labels = model.head, model.labels
    if head.kind == "nearest-mean":
        n = head.sums.shape[0]
        units = np.arange(n)
        return {"kind": "ncm", "sums": _np(head.sums), "counts": _np(head.counts),
                "cosine": head.cosine, **_rows(labels, units, np.full(n, -1))}
    if head.kind in ("hebbian", "competitive", "neural-gas", "slda"):
        n = head.n_rows
        arrays = {k: (getattr(head, k).cpu().numpy() if k == "alive" else _np(getattr(head, k)))
                  for k in HEAD_ARRAYS[head.kind]}
        return {"kind": head.kind, **arrays, "params": dict(head.params),
                **_rows(labels, np.arange(n), np.full(n, -1))}
    if head.kind == "bias":
        single = head.inner
        if single.kind != "single":
            raise ValueError("bias correction over a head other than a single linear one")
        w, b = _np(single.linear.weight).copy(), _np(single.linear.bias).copy()
        k, alpha, beta = head.new_from, float(head.alpha), float(head.beta)
        w[k:] *= alpha
        b[k:] = b[k:] * alpha + beta
        return _linear(labels, w, b, np.arange(len(b)), np.full(len(b), -1))
    if head.kind == "single":
        w, b = _np(head.linear.weight), _np(head.linear.bias)
        return _linear(labels, w, b, np.arange(len(b)), np.full(len(b), -1))
    if head.kind == "multi":
        ws = [_np(h.weight) for h in head.heads]
        bs = [_np(h.bias) for h in head.heads]
        return _linear(labels, np.concatenate(ws), np.concatenate(bs),
                       np.concatenate([np.arange(len(b)) for b in bs]),
                       np.concatenate([np.full(len(b), i) for i, b in enumerate(bs)]))
    if head.kind == "blocks":
        return _blocks(head, labels)
    raise ValueError(f"a {head.kind} head has no split form")


def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _rows(labels: dict, units: np.ndarray, tasks: np.ndarray) -> dict:
    t = np.where(tasks < 0, 0, tasks)
    return {"labels": units_to_labels(labels, units, t), "tasks": tasks.astype(np.int64),
            "units": units.astype(np.int64), "names": labels.get("names") or {}}


def _linear(labels, w, b, units, tasks) -> dict:
    return {"kind": "linear", "weight": w, "bias": b, **_rows(labels, units, tasks)}


def _blocks(head, labels) -> dict:
    at = head.offsets
    rows_w, rows_b, units, tasks, offset = [], [], [], [], 0
    for i, block in enumerate(head.blocks):
        w = np.zeros((block.out_features, at[-1]), dtype=np.float32)
        w[:, at[i]:at[i + 1]] = _np(block.weight)
        rows_w.append(w)
        rows_b.append(_np(block.bias))
        n = block.out_features
        if head.route == "class":
            units.append(np.arange(offset, offset + n))
            tasks.append(np.full(n, -1))
        else:
            units.append(np.arange(n))
            tasks.append(np.full(n, i))
        offset += n
    return _linear(labels, np.concatenate(rows_w), np.concatenate(rows_b), np.concatenate(units),
                   np.concatenate(tasks))


def head_scores(head: dict, feats: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Scores of every row for a batch of features (numpy, as the device runtime computes them);
    rows of another task are -inf."""
    feats = feats.reshape(len(feats), -1).astype(np.float32)
    if head["kind"] == "linear":
        scores = feats @ head["weight"].T + head["bias"]
    elif head["kind"] != "ncm":
        scores = head_from_arrays(head).scores(feats)
    else:
        means, known = ncm_means(head["sums"], head["counts"], head["cosine"])
        scores = ncm_scores(feats, means, known, head["cosine"])
    tasks = np.asarray(head["tasks"])
    active = (tasks[None, :] < 0) | (tasks[None, :] == np.asarray(t).reshape(-1, 1))
    return np.where(active, scores, -np.inf).astype(np.float32)


def as_whole(head: dict, scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A whole model's scores ``(N, units)`` laid out as the head's rows: row r of sample n is
    unit ``units[r]`` where the row serves the sample's task, -inf elsewhere."""
    tasks = np.asarray(head["tasks"])
    active = (tasks[None, :] < 0) | (tasks[None, :] == np.asarray(t).reshape(-1, 1))
    return np.where(active, scores[:, head["units"]], -np.inf).astype(np.float32)


def fit_ncm(like: dict, feats: np.ndarray, y_labels: np.ndarray, t: np.ndarray,
            cosine: bool = False) -> dict:
    """An NCM head over the rows of ``like`` (the trained head's labels and tasks), fitted in
    closed form on features of labelled samples; samples of no row are left out."""
    labels, tasks = np.asarray(like["labels"]), np.asarray(like["tasks"])
    match = (labels[None, :] == y_labels.reshape(-1, 1)) & (
        (tasks[None, :] < 0) | (tasks[None, :] == t.reshape(-1, 1)))
    keep = match.any(1)
    rows = match.argmax(1)[keep]
    f = feats.reshape(len(feats), -1).astype(np.float32)[keep]
    sums, counts = ncm_update(np.zeros((len(labels), f.shape[1]), np.float32),
                              np.zeros(len(labels), np.float32), f, rows, cosine)
    return {"kind": "ncm", "sums": sums, "counts": counts, "cosine": cosine, "labels": labels,
            "tasks": tasks, "units": like["units"], "names": like.get("names") or {}}


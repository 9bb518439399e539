"""An exported model on the device: ONNX Runtime for the frozen graph, numpy for the head that
keeps learning (no torch, no onnx package).

- A whole export (metadata ``graph`` "whole") outputs ``scores``; it predicts but does not learn.
- A split export (``graph`` "extractor") outputs ``features``; its head (``head_file``, an
  ``.npz`` beside it) is a :mod:`edgelll.runtime.heads` head that learns from those features:
  ``learn(x, y)`` on known labels, ``learn_class(x_few, label)`` for a new one (predicted at once).
  ``save(path)`` writes the head and the optional reservoir buffer (:mod:`.buffer`) as a device
  state; ``Model.load(onnx, state=path)`` restores them bit for bit. The ONNX file is never
  rewritten.
- A foreign ONNX file (no edgelll metadata) loads too: its first input takes the batch, and
  ``predict`` is the argmax index of its first output (``classes`` are those indices); it cannot
  learn.

Sessions come from :func:`edgelll.runtime.session.make_session`: explicit providers and threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from . import format as fmt
from .buffer import ReservoirBuffer
from .heads import Head, head_from_arrays
from .inputs import InputSpec, label_array, task_array
from .session import DEFAULT_PROVIDERS, make_session
from .state import load_state, save_state


def _direct_run(session):
    """``session.run`` without its per-call Python checks. ``InferenceSession.run`` validates the
    feed's names and OrtValue ownership and wraps a provider fallback around the C++ session's
    ``run``; the Model checks its inputs itself (:mod:`.inputs`), feeds numpy arrays under the
    graph's own names and never wants a silent provider fallback (the providers are explicit), so
    it calls the C++ session directly: about 5 us of a 75 us batch-1 call on a 784-400-400-10 MLP.
    Where an onnxruntime lacks that attribute, the public ``run`` is used."""
    raw = getattr(session, "_sess", None)
    if raw is None or not callable(getattr(raw, "run", None)):
        return session.run
    return lambda outputs, feed: raw.run(outputs, feed, None)


class Model:
    """Use :meth:`Model.load`. ``classes[j]`` is the data-set label of column ``j`` of
    :meth:`scores`; ``head`` is the learning head (split exports), ``buffer`` the reservoir."""

    def __init__(self, path: Path, session, meta: dict | None, head: Head | None,
                 buffer: ReservoirBuffer | None) -> None:
        self.path, self.session, self.meta = path, session, meta
        self.head, self.buffer = head, buffer
        self._session_run = _direct_run(session)
        first = session.get_inputs()[0]
        spec = (meta or {}).get("input")
        self.input = (InputSpec(spec["shape"], spec["dtype"], spec.get("layout")) if spec
                      else InputSpec.from_session_input(first))
        self._x_name = "x" if meta else first.name
        self._task_input = bool(meta) and "task" in meta.get("inputs", [])
        self._out = ["features" if head is not None else "scores"] if meta else [
            session.get_outputs()[0].name]
        labels = (meta or {}).get("labels") or {}
        self._labels = labels
        self._n_tasks = len(labels["tasks"]) if labels.get("scenario") == "task" else None
        self.routes_by_task = bool((meta or {}).get("routes_by_task")) or bool(
            head is not None and head.routes_by_task)
        self._whole_rows = None if head is not None or not meta else self._rows_of_units()
        # A whole class- or domain-scenario graph: each output unit's label, looked up once here
        self._unit_labels = None
        if meta and head is None and labels.get("scenario") != "task":
            width = session.get_outputs()[0].shape[-1]
            if isinstance(width, int):
                self._unit_labels = fmt.units_to_labels(labels, np.arange(width))

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, state=None, providers=DEFAULT_PROVIDERS, threads: int = 1,
             buffer_bytes: int | None = None, buffer_of: str = "features", seed: int = 0,
             lr: float = 0.01) -> Model:
        """Load an export (whole or split) or a foreign ONNX file. ``state``: a device state
        saved by :meth:`save`, restored in place of the export's head (and buffer).
        ``buffer_bytes``: keep a reservoir of ``buffer_of`` ("features" or "samples") under that
        many bytes, filled by :meth:`learn`. ``lr``: the linear head's learning rate."""
        path = Path(path)
        session = make_session(path, providers, threads)
        meta = fmt.parse_metadata(session.get_modelmeta().custom_metadata_map, path)
        graph = (meta or {}).get("graph")
        if meta is not None and graph not in ("whole", "extractor"):
            raise DataError(f"{path}: unknown graph kind {graph!r} in its metadata; export it again")
        if graph != "extractor":
            if state is not None:
                raise DataError(f"{path} is not a split export, so it has no device state to "
                                f"restore; export the run with edgelll export --split")
            return cls(path, session, meta, None, None)
        width = cls._feature_width(session)
        if state is not None:
            head, buffer = load_state(state, width, lr)
        else:
            head = head_from_arrays(cls._load_head(path, meta), lr)
            buffer = None
        if head.n_features != width and width is not None:
            raise DataError(f"{path}: its head takes {head.n_features} features but the "
                            f"extractor gives {width}; export it again")
        model = cls(path, session, meta, head, buffer)
        if buffer_bytes is not None and buffer is None:
            model.buffer = model._new_buffer(buffer_bytes, buffer_of, seed)
        return model

    @staticmethod
    def _feature_width(session) -> int | None:
        outs = {o.name: o for o in session.get_outputs()}
        if "features" not in outs:
            raise DataError("this extractor graph has no 'features' output; export it again")
        dims = outs["features"].shape
        return dims[1] if len(dims) == 2 and isinstance(dims[1], int) else None

    @staticmethod
    def _load_head(path: Path, meta: dict) -> dict:
        name = meta.get("head_file")
        if not name:
            raise DataError(f"{path}: a split export without head_file in its metadata; export "
                            f"it again with edgelll export --split")
        head_path = path.parent / name
        if not head_path.is_file():
            raise DataError(f"{head_path} (the head of {path.name}) does not exist; copy it "
                            f"beside the .onnx file")
        return fmt.load_head(head_path)

    def _new_buffer(self, budget: int, of: str, seed: int) -> ReservoirBuffer:
        if of == "samples":
            if None in self.input.shape:
                raise DataError("this model's input has open dimensions; buffer its features")
            return ReservoirBuffer(budget, self.input.shape, self.input.dtype, seed, of)
        return ReservoirBuffer(budget, (self.head.n_features,), np.float32, seed, of)

    def _rows_of_units(self):
        """A whole task-scenario graph: one column per (task, unit), for :meth:`scores`."""
        if self._labels.get("scenario") != "task":
            return None
        pairs = [(t, u, label) for t, task in enumerate(self._labels["tasks"])
                 for u, label in enumerate(task)]
        return tuple(np.array(v, dtype=np.int64) for v in zip(*pairs))

    # -- inference ------------------------------------------------------------------------------
    @property
    def classes(self) -> np.ndarray:
        if self.head is not None:
            return self.head.labels.copy()
        if self._whole_rows is not None:
            return self._whole_rows[2].copy()
        width = self.session.get_outputs()[0].shape[-1]
        units = np.arange(width if isinstance(width, int) else self._probe_width(), dtype=np.int64)
        return fmt.units_to_labels(self._labels, units) if self.meta else units

    @property
    def names(self) -> dict[int, str]:
        if self.head is not None:
            return dict(self.head.names)
        return {int(k): v for k, v in (self._labels.get("names") or {}).items()}

    def _probe_width(self) -> int:
        zeros = np.zeros((1, *[d or 1 for d in self.input.shape]), self.input.dtype)
        return int(self._run(zeros, None).shape[-1])

    def _tasks(self, task_ids, n: int) -> np.ndarray | None:
        if task_ids is None:
            if self.routes_by_task:
                raise DataError("this model routes by task: pass task_ids (one per sample, or "
                                "one for all)")
            return None
        return task_array(task_ids, n, self._n_tasks)

    def _run(self, x: np.ndarray, t: np.ndarray | None) -> np.ndarray:
        feed = {self._x_name: x}
        if self._task_input:
            feed["task"] = t if t is not None else np.zeros(len(x), np.int64)
        return self._session_run(self._out, feed)[0]

    def features(self, x, task_ids=None) -> np.ndarray:
        """The extractor's features ``(N, D)`` of raw samples (split exports)."""
        if self.head is None:
            raise DataError(self._cannot("give features"))
        x = self.input.batch(x)
        return self._run(x, self._tasks(task_ids, len(x)))

    def scores(self, x, task_ids=None) -> np.ndarray:
        """Per-class scores ``(N, C)``; column ``j`` scores label ``classes[j]`` (rows of other
        tasks are -inf when task ids are given)."""
        x = self.input.batch(x)
        t = self._tasks(task_ids, len(x))
        out = self._run(x, t)
        if self.head is not None:
            return self.head.scores(out, t)
        if self._whole_rows is not None:
            row_task, row_unit, _ = self._whole_rows
            t = np.zeros(len(x), np.int64) if t is None else t
            return np.where(row_task[None, :] == t[:, None], out[:, row_unit], np.float32(-np.inf))
        return out

    def predict(self, x, task_ids=None) -> np.ndarray:
        """Data-set labels (int64 ``(N,)``; one sample gives ``(1,)``) of raw samples as stored.
        A foreign ONNX model answers the argmax index of its first output."""
        x = self.input.batch(x)
        if self._unit_labels is not None and not self._task_input:
            # A whole class- or domain-scenario graph (the batch-1 hot path): one run, one look-up
            return self._unit_labels[self._session_run(self._out, {self._x_name: x})[0].argmax(1)]
        t = self._tasks(task_ids, len(x)) if task_ids is not None or self.routes_by_task else None
        out = self._run(x, t)
        if self.head is not None:
            return self.head.labels[np.argmax(self.head.scores(out, t), axis=1)]
        if self._unit_labels is not None:
            return self._unit_labels[out.argmax(1)]
        units = np.argmax(out, axis=1)
        return fmt.units_to_labels(self._labels, units, t) if self.meta else units.astype(np.int64)

    # -- learning on the device -----------------------------------------------------------------
    def _cannot(self, what: str) -> str:
        if self.meta is None:
            return (f"{self.path.name} has no edgelll metadata (a foreign ONNX model), so it "
                    f"cannot {what}; export an edgelll run with edgelll export --split")
        return (f"{self.path.name} is a whole export, which cannot {what}; export the run with "
                f"edgelll export --split to learn on the device")

    def learn(self, x, y, task_ids=None) -> None:
        """Update the head on the extractor's features of ``x`` with labels ``y`` (each one a
        class of the head; a new class joins by :meth:`learn_class`). The NCM head adds the batch
        in closed form; the linear head takes one gradient step, on the batch plus as many
        buffered items when there is a buffer. The buffer then offers the batch to its reservoir."""
        if self.head is None:
            raise DataError(self._cannot("learn"))
        x = self.input.batch(x)
        t = self._tasks(task_ids, len(x))
        y = label_array(y, len(x))
        self.head.rows_of(y, t)  # an unknown label is refused before anything changes
        feats = self._run(x, t)
        if self.buffer is not None and self.head.learns == "gradient" and self.buffer.size:
            bx, by, bt = self.buffer.sample(len(x))
            bf = self.features(bx, bt if t is not None else None) if self._buffers_samples else bx
            self.head.learn(np.concatenate([feats, bf]), np.concatenate([y, by]),
                            None if t is None else np.concatenate([t, bt]))
        else:
            self.head.learn(feats, y, t)
        if self.buffer is not None:
            self.buffer.add(x if self._buffers_samples else feats, y, t)

    @property
    def _buffers_samples(self) -> bool:
        return self.buffer is not None and self.buffer.of == "samples"

    def learn_class(self, x_few, label: int, name: str | None = None, task_id: int | None = None) -> None:
        """Add class ``label`` from a few samples; it is predicted at once. The NCM head appends
        their sums and counts, the linear head imprints a row (:mod:`.heads`). A label the head
        already has (in that task) is refused: use :meth:`learn` to add samples to it."""
        if self.head is None:
            raise DataError(self._cannot("learn a class"))
        label = int(label_array(label, 1)[0])
        if self.routes_by_task and task_id is None:
            raise DataError("this model routes by task: pass task_id, the task the new class "
                            "belongs to")
        task = -1 if task_id is None else int(task_array(task_id, 1, None)[0])
        known = (self.head.labels == label) & ((self.head.tasks == task) | (self.head.tasks == -1)
                                               | (task == -1))
        if known.any():
            raise DataError(f"label {label} is already a class of this head; use learn(x, y) to "
                            f"add samples to it, or pick a new label")
        x = self.input.batch(x_few)
        if len(x) == 0:
            raise DataError("learn_class needs at least one sample of the new class")
        t = None if task_id is None else np.full(len(x), task, np.int64)
        feats = self._run(x, t)
        self.head.add_class(feats, label, task, name)
        if self.buffer is not None:
            self.buffer.add(x if self._buffers_samples else feats, np.full(len(x), label), t)

    def save(self, path) -> None:
        """Write the head and the buffer as a device state (atomically); the ONNX file and the
        export's head file are never rewritten."""
        if self.head is None:
            raise DataError(self._cannot("save a device state"))
        path = Path(path)
        protected = {self.path.resolve()}
        if self.meta and self.meta.get("head_file"):
            protected.add((self.path.parent / self.meta["head_file"]).resolve())
        if path.resolve() in protected:
            raise DataError(f"{path} is part of the export, which is never rewritten; save the "
                            f"device state to another file")
        save_state(path, self.head, self.buffer, self.meta)

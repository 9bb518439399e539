"""The torch -> ONNX half of ``edgelll export``: graphs, metadata, ONNX Runtime sessions, and
the evaluation that every export is checked with.

A whole graph takes samples as stored (``x``, the run's dtype; the model's
:class:`~edgelll.models.preprocess.Preprocess` casts and normalises inside the graph) and, when
the head routes by task, ``task`` (int64); it outputs ``scores``. An extractor graph
(``forward_features``) outputs ``features``. The batch axis is dynamic.

torch 2.13's default exporter is the dynamo one, which needs onnxscript; the TorchScript exporter
(``dynamo=False``) traces these models exactly (tested for every head variant), and its
deprecation warning is silenced here only.

Sessions always name their providers and thread counts: ONNX Runtime's implicit defaults (every
core, every provider) make timings and results depend on the host.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import torch
from torch import nn

from .errors import ExportError
from .runtime.format import METADATA_KEY, units_to_labels

PROVIDERS = ["CPUExecutionProvider"]
EVAL_BATCH = 4096



class _Whole(nn.Module):
    def __init__(self, model: nn.Module, routed: bool) -> None:
        super().__init__()
        self.model, self.routed = model, routed

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, task if self.routed else None)


class _Extractor(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x).flatten(1)


def graph_inputs(model: nn.Module, graph: str) -> list[str]:
    """The graph's inputs: ``task`` only where a whole model's head routes by task (an unused
    input would be pruned by the exporter and then missing from the file)."""
    return ["x", "task"] if graph == "whole" and model.routes_by_task else ["x"]


def to_onnx(model: nn.Module, graph: str, opset: int) -> bytes:
    """The model (``graph`` "whole" or "extractor") as ONNX bytes, batch axis dynamic."""
    from .models.preprocess import DTYPES

    model = model.cpu().eval()
    names = graph_inputs(model, graph)
    x = torch.zeros(2, *model.input_shape, dtype=DTYPES[model.preprocess.dtype])
    args = (x, torch.zeros(2, dtype=torch.long)) if len(names) == 2 else (x,)
    wrapper = _Whole(model, len(names) == 2) if graph == "whole" else _Extractor(model)
    output = "scores" if graph == "whole" else "features"
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(wrapper, args, buf, dynamo=False, input_names=names,
                              output_names=[output], opset_version=opset,
                              dynamic_axes={**{n: {0: "batch"} for n in names},
                                            output: {0: "batch"}})
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ExportError(f"the {model.name} model with a {model.head.spec()['kind']} head cannot "
                          f"be exported to ONNX opset {opset} ({first}); try another --opset or "
                          f"export with --split") from None
    return buf.getvalue()


def with_metadata(data: bytes, meta: dict) -> bytes:
    """``data`` with ``meta`` as JSON under the ``edgelll`` metadata key, checked by onnx."""
    import onnx

    proto = onnx.load_from_string(data)
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta, sort_keys=True)})
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def read_metadata(path) -> dict | None:
    """The edgelll metadata of an existing ONNX file, or None when it has none or is unreadable."""
    import onnx

    from .runtime.format import parse_metadata

    try:
        proto = onnx.load(str(path), load_external_data=False)
        return parse_metadata({p.key: p.value for p in proto.metadata_props}, path)
    except Exception:  # noqa: BLE001 - a torn or foreign file is "not an edgelll export"
        return None


def session(data: bytes | str, threads: int = 1):
    """An ONNX Runtime session with explicit providers and thread counts."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=PROVIDERS)


def run_session(sess, x: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """The session's only output for a whole batch, in slices of ``EVAL_BATCH`` rows."""
    names = [i.name for i in sess.get_inputs()]
    outs = []
    for start in range(0, len(x), EVAL_BATCH):
        feed = {"x": x[start:start + EVAL_BATCH]}
        if "task" in names:
            feed["task"] = t[start:start + EVAL_BATCH].astype(np.int64)
        outs.append(sess.run(None, feed)[0])
    return np.concatenate(outs)


@torch.no_grad()
def torch_outputs(model: nn.Module, x: torch.Tensor, t: torch.Tensor, graph: str) -> np.ndarray:
    model.eval()
    outs = []
    for start in range(0, len(x), EVAL_BATCH):
        sl = slice(start, start + EVAL_BATCH)
        out = model(x[sl], t[sl]) if graph == "whole" else model.forward_features(x[sl]).flatten(1)
        outs.append(out.float().cpu().numpy())
    return np.concatenate(outs)


def test_sets(stream) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every experience's test set as arrays: samples as stored, data-set labels, task ids."""
    sets = []
    for exp in stream.experiences:
        x = exp.x_test.cpu().numpy()
        t = np.full(len(x), exp.task_id, dtype=np.int64)
        y = exp.y_test.cpu().numpy().astype(np.int64)
        sets.append((x, stream_labels(stream, y, t), t))
    return sets


def stream_labels(stream, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The stream's targets (output units, or labels within a task) as data-set labels."""
    return units_to_labels(stream.label_map(), y, t)


def accuracy(scores: np.ndarray, labels_of_rows, y: np.ndarray, t: np.ndarray) -> float:
    """Share of samples whose best-scoring row carries their label; a sample whose every score is
    -inf (its task has no units) counts wrong, as in the learner's evaluation."""
    best = scores.argmax(1)
    ok = np.isfinite(scores[np.arange(len(best)), best]) & (labels_of_rows(best, t) == y)
    return float(ok.mean()) if len(y) else 0.0


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference over finite entries; inf when the two disagree on which are finite."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    if a.shape != b.shape or not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb]):
        return float("inf")
    return float(np.abs(a[fa].astype(np.float64) - b[fa]).max()) if fa.any() else 0.0


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0

"""int8 quantisation of an exported graph with ONNX Runtime's quantiser, its calibration data,
and the batch-1 timing of fp32 against int8.

Static quantisation (``onnx-int8``) writes QDQ pairs with per-channel weight scales (Jacob et al.
2018, arXiv:1712.05877, for the affine uint8/int8 scheme; Krishnamoorthi 2018, arXiv:1806.08342,
for per-channel weights), activation ranges calibrated by min/max over samples as stored: the
run's replay buffer when the checkpoint has one (what the run itself keeps of its past), else a
held-out slice of its training data, never a test set. The raw uint8 input is not quantised (it is
an integer tensor; the quantiser only quantises float tensors, so QDQ starts after the graph's
Cast and normalisation). Dynamic quantisation (``onnx-int8-dynamic``) needs no calibration: it
quantises the weights and computes activation ranges per batch at run time.

int8 is not always faster: on x86 CPUs without VNNI, or for small matrices, the quantise and
dequantise steps cost more than they save. The timing says so in words when it happens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

# Buffers of raw samples, by the strategy that keeps them (latent keeps quantised activations,
# which are not graph inputs).
RAW_BUFFERS = ("replay", "icarl")


def calibration_samples(ckpt: dict, stream, mode: str, n: int, seed: int):
    """``(x, y, t, source)``: the checkpoint's exemplars (``mode`` "buffer", when it has any;
    else the training slice) or ``n`` training samples spread over the experiences learnt so far
    ("holdout"), seeded; ``y`` are the stream's targets (units, or labels within a task)."""
    rng = np.random.default_rng(seed)
    if mode == "buffer":
        for name in RAW_BUFFERS:
            state = ((ckpt.get("strategies") or {}).get(name) or {}).get("buffer")
            if state is not None and len(state["x"]):
                pick = np.sort(rng.permutation(len(state["x"]))[:n])
                return (state["x"].cpu().numpy()[pick], _i64(state["y"])[pick],
                        _i64(state["t"])[pick], f"{name} buffer")
    learnt = stream.experiences[: int(ckpt["next_experience"])]
    per = max(1, -(-n // len(learnt)))
    xs, ys, ts = [], [], []
    for exp in learnt:
        data = exp.train_data()
        idx = np.sort(rng.permutation(len(data))[:per])
        xs.append(data.x[idx].cpu().numpy())
        ys.append(_i64(data.y[idx]))
        ts.append(_i64(data.t[idx]))
    return (np.concatenate(xs)[:n], np.concatenate(ys)[:n], np.concatenate(ts)[:n],
            "training slice")


def _i64(t) -> np.ndarray:
    return t.cpu().numpy().astype(np.int64)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol: one feed dict per call, then None."""

    def __init__(self, x: np.ndarray, t: np.ndarray, names: list[str], batch: int = 64) -> None:
        self.feeds = []
        for start in range(0, len(x), batch):
            feed = {"x": x[start:start + batch]}
            if "task" in names:
                feed["task"] = t[start:start + batch]
            self.feeds.append(feed)
        self.it = iter(self.feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self) -> None:
        self.it = iter(self.feeds)


def float_nodes(fp32: bytes, prefixes: tuple[str, ...]) -> list[str]:
    """Names of the nodes under the given module prefixes (kept in float by the quantiser)."""
    import onnx

    graph = onnx.load_from_string(fp32).graph
    return [n.name for n in graph.node if n.name.startswith(prefixes)]


def quantize(fp32: bytes, kind: str, names: list[str], calib=None,
             keep_float: tuple[str, ...] = ("/model/preprocess/",)) -> bytes:
    """The int8 graph of ``fp32`` (``kind`` "static" with ``calib`` = (x, t), or "dynamic").
    Nodes under ``keep_float`` stay float: the input's cast and normalisation (quantising
    between the Sub and the Mul would round the inputs twice), and nearest-mean distances."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    # The quantiser logs its advice to run its pre-processing on the root logger; these graphs
    # come shape-inferred from the exporter, so the advice is noise on a user's terminal.
    with tempfile.TemporaryDirectory(prefix="edgelll-quant-") as tmp, _quiet_root_logger():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        exclude = float_nodes(fp32, keep_float)
        if kind == "static":
            quantize_static(str(src), str(dst), _Reader(calib[0], calib[1], names),
                            nodes_to_exclude=exclude,
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        else:
            quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=exclude)
        return dst.read_bytes()


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


STATIC_SETTINGS = {"quant_format": "QDQ", "per_channel": True, "activation_type": "QUInt8",
                   "weight_type": "QInt8", "calibrate_method": "MinMax"}
DYNAMIC_SETTINGS = {"per_channel": True, "weight_type": "QInt8", "activations": "per batch"}


def median_latency_us(sess, feed: dict, runs: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        sess.run(None, feed)
    times = np.empty(runs, dtype=np.int64)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        sess.run(None, feed)
        times[i] = time.perf_counter_ns() - t0
    return float(np.median(times)) / 1000.0


def compare_latency(fp32_sess, int8_sess, feed: dict, runs: int = 300) -> dict:
    """Batch-1 medians of both sessions in this process, each warmed up first, measured in
    alternating rounds so that a slow moment of the host hits both alike."""
    rounds, a, b = 3, [], []
    for _ in range(rounds):
        a.append(median_latency_us(fp32_sess, feed, runs // rounds))
        b.append(median_latency_us(int8_sess, feed, runs // rounds))
    fp32, int8 = float(np.median(a)), float(np.median(b))
    out = {"batch": 1, "runs": runs, "fp32_median_us": fp32, "int8_median_us": int8,
           "int8_speedup": fp32 / int8 if int8 > 0 else None, "cpu_count": os.cpu_count()}
    if int8 > fp32:
        out["note"] = (f"int8 is slower than fp32 on this host ({int8:.1f} us against "
                       f"{fp32:.1f} us at batch 1): the quantise/dequantise steps cost more than "
                       f"the int8 matrix products save here; keep fp32 where latency matters more "
                       f"than file size")
    return out

"""Device runtime costs (issue #9's targets), measured in one run:

1. ``Model.predict`` at batch 1 against a bare ``InferenceSession.run`` of the same session on a
   784-400-400-10 MLP export (target <= 1.1x). The two alternate in rounds (the order flipping
   every round), and the ratio is the median of the per-round ratios, so a machine that drifts in
   speed does not skew it.
2. On-device ``learn`` with the NCM head on 400-dimensional features, in microseconds per sample,
   at batch 1 and 256 (targets <= 20 and <= 2), and ``learn_class`` from 5 shots.
3. Install bytes: the runtime's distributions (numpy, onnxruntime, array-api-compat, typer, rich,
   their dependencies, and edgelll's own files) against the training install (those plus torch,
   matplotlib, onnx and their dependencies), summed from ``importlib.metadata`` file lists of the
   installed distributions (target <= 1/5).

The MLP is made here with torch (random weights: latency does not depend on them) and exported with
the contract's metadata, unless ``--onnx`` names an export (e.g. from ``edgelll export``). numpy's
BLAS gets one thread (``OPENBLAS_NUM_THREADS=1`` unless set), as the ONNX Runtime session does:
on a shared 2-core host, BLAS's default threads made the batch-256 update ~20x slower.

    python benchmarks/runtime_speed.py [--onnx FILE] [--rounds 30] [--json OUT.json]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.metadata as md  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNTIME_DISTS = ["numpy", "onnxruntime", "array-api-compat", "typer", "rich"]
TRAIN_DISTS = ["torch", "matplotlib", "onnx"]
OWN_DIRS = ["edgelll", "cli", "models", "devices"]


def make_mlp_export(path: Path) -> Path:
    """A 784-400-400-10 MLP on raw uint8 28x28 images, exported whole with edgelll metadata."""
    import onnx
    import torch

    from edgelll.runtime import format as fmt

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 400), torch.nn.ReLU(),
                              torch.nn.Linear(400, 400), torch.nn.ReLU(), torch.nn.Linear(400, 10))

    class Raw(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.float().sub(33.3).mul(1 / 78.6))

    torch.onnx.export(Raw().eval(), (torch.zeros(1, 1, 28, 28, dtype=torch.uint8),), str(path),
                      input_names=["x"], output_names=["scores"], opset_version=17, dynamo=False,
                      dynamic_axes={"x": {0: "batch"}, "scores": {0: "batch"}})
    meta = {"format": fmt.EXPORT_FORMAT, "edgelll_version": "benchmark", "export_format": "onnx",
            "graph": "whole", "input": {"shape": [1, 28, 28], "dtype": "uint8", "layout": "nchw"},
            "inputs": ["x"], "routes_by_task": False,
            "labels": {"scenario": "class", "units": list(range(10))}}
    model = onnx.load(str(path))
    prop = model.metadata_props.add()
    prop.key, prop.value = fmt.METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(path))
    return path


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1e3


def predict_ratio(onnx_path: Path, rounds: int, calls: int, threads: int) -> dict:
    from edgelll.runtime import Model

    model = Model.load(onnx_path, threads=threads)
    x = np.random.default_rng(0).integers(0, 256, (1, *model.input.shape), dtype=np.uint8)
    sess, feed, out = model.session, {"x": x}, ["features" if model.head else "scores"]
    bare = lambda: sess.run(out, feed)  # noqa: E731
    ours = lambda: model.predict(x)  # noqa: E731
    for _ in range(200):  # warm-up
        bare(), ours()
    b_us, p_us, ratios = [], [], []
    for r in range(rounds):
        pair = (bare, ours) if r % 2 == 0 else (ours, bare)
        times = {id(f): per_call_us(f, calls) for f in pair}
        b_us.append(times[id(bare)])
        p_us.append(times[id(ours)])
        ratios.append(p_us[-1] / b_us[-1])
    return {"bare_run_us": statistics.median(b_us), "predict_us": statistics.median(p_us),
            "ratio": statistics.median(ratios), "threads": threads}


def learn_cost(rounds: int) -> dict:
    from edgelll.runtime import LinearHead, NCMHead

    rng = np.random.default_rng(0)
    head = NCMHead(np.zeros((10, 400)), np.zeros(10), list(range(10)), [-1] * 10)
    out = {}
    for batch, calls in ((1, 2000), (256, 40)):
        f = rng.random((batch, 400), dtype=np.float32)
        y = rng.integers(0, 10, batch)
        per_call_us(lambda: head.learn(f, y), calls // 4)  # warm-up
        out[f"ncm_learn_us_per_sample_b{batch}"] = min(
            per_call_us(lambda: head.learn(f, y), calls) for _ in range(rounds)) / batch
    shots = rng.random((5, 400), dtype=np.float32)

    def add(kind):
        h = (NCMHead(np.zeros((10, 400)), np.zeros(10), list(range(10)), [-1] * 10) if kind == "ncm"
             else LinearHead(rng.normal(size=(10, 400)), np.zeros(10), list(range(10)), [-1] * 10))
        start = time.perf_counter_ns()
        h.add_class(shots, 10)
        return (time.perf_counter_ns() - start) / 1e3

    for kind in ("ncm", "linear"):
        out[f"{kind}_learn_class_5_shots_us"] = statistics.median(add(kind) for _ in range(200))
    return out


def _requires(dist: md.Distribution) -> list[str]:
    from packaging.requirements import Requirement

    names = []
    for raw in dist.requires or []:
        req = Requirement(raw)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def closure(names: list[str]) -> dict[str, md.Distribution]:
    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen or name == "edgelll":
            continue
        try:
            seen[name] = dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        todo.extend(_requires(dist))
    return seen


def dist_bytes(dist: md.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def install_bytes() -> dict:
    own = sum(p.stat().st_size for d in OWN_DIRS for p in (ROOT / d).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts)
    runtime = closure(RUNTIME_DISTS)
    train = closure(RUNTIME_DISTS + TRAIN_DISTS)
    rt = own + sum(map(dist_bytes, runtime.values()))
    tr = own + sum(map(dist_bytes, train.values()))
    return {"runtime_bytes": rt, "training_bytes": tr, "ratio": rt / tr,
            "runtime_dists": sorted(runtime), "training_only_dists": sorted(set(train) - set(runtime))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, help="an edgelll export to time (default: made here)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=300, help="calls per timed round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or make_mlp_export(Path(tmp) / "mlp.onnx")
        res = {"predict": predict_ratio(path, args.rounds, args.calls, args.threads)}
    res["learn"] = learn_cost(max(3, args.rounds // 5))
    res["install"] = install_bytes()
    p, lc, ins = res["predict"], res["learn"], res["install"]
    print(f"predict batch 1: {p['predict_us']:.1f} us vs bare InferenceSession.run "
          f"{p['bare_run_us']:.1f} us -> {p['ratio']:.3f}x (target <= 1.1)")
    print(f"NCM learn, 400-d features: {lc['ncm_learn_us_per_sample_b1']:.2f} us/sample at batch 1 "
          f"(target <= 20), {lc['ncm_learn_us_per_sample_b256']:.3f} at batch 256 (target <= 2)")
    print(f"learn_class from 5 shots: NCM {lc['ncm_learn_class_5_shots_us']:.1f} us, linear "
          f"(imprinting) {lc['linear_learn_class_5_shots_us']:.1f} us")
    print(f"install: runtime {ins['runtime_bytes'] / 2**20:.1f} MiB vs training "
          f"{ins['training_bytes'] / 2**20:.1f} MiB -> {ins['ratio']:.3f} (target <= 0.2)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

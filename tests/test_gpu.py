"""The CUDA path: data resident on the GPU, bf16 autocast, same learning as on the CPU."""

import pytest
import torch

from edgelll import learn, resolve
from edgelll.learner import Learner

pytestmark = pytest.mark.gpu


def test_cuda_run_keeps_data_and_model_on_the_gpu():
    learner = Learner(resolve({"strategies": ["replay", "ewc"], "epochs": 3, "device": "cuda"}))
    assert learner.stream.experiences[0].x_test.is_cuda
    assert learner.stream.experiences[0].train_data().x.dtype == torch.uint8
    result = learner.run()
    assert all(p.is_cuda for p in result.model.parameters())
    assert result.strategies[0].buffer.x.is_cuda
    assert result.metrics["acc"] > 0.85
    assert result.experiences[-1]["peak_cuda_bytes"] > 0


def test_bf16_autocast_learns_like_fp32():
    fp32 = learn(resolve({"strategies": ["replay"], "epochs": 3, "device": "cuda"}))
    bf16 = learn(resolve({"strategies": ["replay"], "epochs": 3, "device": "cuda", "amp": True}))
    assert abs(bf16.metrics["acc"] - fp32.metrics["acc"]) < 0.05


def test_auto_picks_cuda():
    learner = Learner(resolve({"strategies": ["naive"], "epochs": 1, "device": "auto"}))
    assert learner.device.type == "cuda"


def test_profile_times_torch_eager_on_the_gpu_beside_onnx_runtime(tmp_path):
    """edgelll profile on a CUDA machine: torch eager on the GPU (synchronised per call) beside
    ONNX Runtime on the CPU, for a run directory exported on the fly."""
    from edgelll.profiler import ProfileOptions, profile_targets

    run = tmp_path / "run"
    learn(resolve({"strategies": ["replay"], "epochs": 1, "model_args": {"hidden": (32,)}}),
          run_dir=run, plot="none")
    report = profile_targets([run], ProfileOptions(runs=20, batches=(1, 8)))
    latency = report["targets"][0]["latency"]
    for backend in ("ort-cpu", "torch-cpu", "torch-cuda"):
        assert latency[backend][1]["p50_ms"] > 0 and latency[backend][8]["calls"] == 20, backend

"""Memory accounting equals the bytes of the real tensors; budgets refuse what cannot fit."""

import pytest
import torch

from edgelll import BudgetError, resolve
from edgelll.budget import measure_memory, optimizer_state_bytes, probe
from edgelll.buffer import ExemplarBuffer
from edgelll.learner import Learner, make_optimizer
from edgelll.models import create_model
from edgelll.strategies import create_strategy


def _cfg(**kw):
    base = {"strategies": ["naive"], "epochs": 1}
    base.update(kw)
    return resolve(base)


@pytest.mark.parametrize("opt,momentum", [("adam", 0.0), ("sgd", 0.9), ("sgd", 0.0)])
def test_optimizer_state_formula_matches_torch(opt, momentum):
    model = create_model("mlp", (1, 8, 8), 10, hidden=(32, 16))
    cfg = _cfg(optimizer=opt, momentum=momentum)
    optim = make_optimizer(cfg, model)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    optim.step()
    actual = sum(v.nbytes for s in optim.state.values() for v in s.values() if torch.is_tensor(v))
    assert actual == optimizer_state_bytes(list(model.parameters()), opt, momentum)


def test_measured_memory_is_the_sum_of_tensor_bytes():
    torch.manual_seed(0)
    model = create_model("mlp", (1, 8, 8), 4, hidden=(16,))
    optim = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 1, 8, 8)).sum().backward()
    optim.step()
    ewc = create_strategy("ewc", {"lam": 1.0, "fisher_samples": 0, "chunk": 8})
    ewc.omega = {k: torch.ones_like(p) for k, p in model.named_parameters()}
    ewc.anchor = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    report = measure_memory(model, optim, [ewc], activation_bytes=123)
    n_param_bytes = (64 * 16 + 16 + 16 * 4 + 4) * 4  # hand count: 64->16->4 float32
    assert report["parameters"] == n_param_bytes
    assert report["gradients"] == n_param_bytes
    assert report["optimizer"] == 2 * n_param_bytes + 4 * 4  # two moments + four float32 steps
    assert report["strategy:ewc"] == 2 * n_param_bytes
    assert report["activations"] == 123 and report["buffers"] == 8  # normalisation mean, scale


def test_activation_probe_scales_with_rows():
    model = create_model("convnet", (1, 8, 8), 10)
    one = probe(model, torch.randn(1, 1, 8, 8), None)
    eight = probe(model, torch.randn(8, 1, 8, 8), None)
    assert eight.activation_bytes == 8 * one.activation_bytes
    # conv1 1->16 on 8x8, conv2 16->32 on 4x4, linear 128->128 after pooling to 2x2, head 128->10
    macs = 9 * 16 * 64 + 9 * 16 * 32 * 16 + 128 * 128 + 128 * 10
    assert one.forward_flops == 2 * macs


def test_plan_matches_the_final_model_and_replay_fills_the_budget():
    limit = 6 * 2**20
    cfg = _cfg(strategies=["replay", "ewc"], memory=limit, epochs=1)
    learner = Learner(cfg)
    result = learner.run()
    planned, measured = result.memory["planned"], result.memory["components"]
    for key in ("parameters", "gradients", "optimizer", "buffers", "activations", "strategy:replay"):
        assert planned[key] == measured[key], key
    assert measured["strategy:ewc"] <= planned["strategy:ewc"]
    assert planned["total"] <= limit
    replay = result.strategies[0]
    per = 64 * 1 + ExemplarBuffer.LABEL_BYTES  # uint8 8x8 digit + int16 label + int16 task
    # The buffer is as large as the bytes left allow, and not one exemplar more.
    assert planned["total"] + per > limit
    assert replay.buffer.x.dtype == torch.uint8
    assert measured["strategy:replay"] == replay.capacity * per


def test_budget_too_small_is_refused_naming_components():
    with pytest.raises(BudgetError) as err:
        Learner(_cfg(memory=100_000))
    msg = str(err.value)
    for part in ("parameters", "gradients", "optimizer", "activations", "over"):
        assert part in msg
    assert "\n" not in msg


def test_budget_message_names_the_setting_for_python_and_cli_callers():
    # A Python caller passed resolve({"memory": ...}); a CLI user passed --memory: both must
    # recognise what to change.
    with pytest.raises(BudgetError) as err:
        Learner(_cfg(memory=100_000))
    msg = str(err.value)
    assert msg.startswith("memory (--memory) 97.66 KiB is too small")
    for hint in ("raise memory", "batch_size", "--batch-size", "model", "--model"):
        assert hint in msg


def test_independent_counts_every_member():
    result = Learner(_cfg(strategies=["independent"], scenario="task", model_args={"hidden": (16,)})).run()
    member = (64 * 16 + 16 + 16 * 2 + 2) * 4
    assert result.memory["components"]["parameters"] == 5 * member
    assert result.memory["planned"]["parameters"] == 5 * member


def test_joint_plan_equals_the_data_it_keeps():
    result = Learner(_cfg(strategies=["joint"], epochs=1)).run()
    kept = result.memory["components"]["strategy:joint"]
    assert kept == result.memory["planned"]["strategy:joint"]
    # Everything but the last experience: (1433 - its 287 samples) x (64 B image + two int64s).
    last = result.experiences[-1]["samples"] - result.experiences[-2]["samples"]
    assert kept == (1433 - last) * (64 + 16)

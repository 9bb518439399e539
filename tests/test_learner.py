"""The learner loop: forgetting and its cure, bitwise resume, budgets, and the metric layout."""

import json

import numpy as np
import pytest
import torch

from edgelll import EdgelllError, learn, resolve
from edgelll.learner import Learner
from edgelll.runs import latest_checkpoint, load_checkpoint

from _resume import assert_resume_is_exact, run_interrupted


def _cfg(**kw):
    base = {"strategies": ["naive"], "epochs": 3}
    base.update(kw)
    return resolve(base)


def test_replay_beats_naive_by_a_wide_margin_on_the_embedded_stream():
    naive = learn(_cfg(strategies=["naive"]))
    replay = learn(_cfg(strategies=["replay"]))
    # Naive fine-tuning in the class scenario keeps only the last task (about 1/5 of classes).
    assert naive.metrics["acc"] < 0.25
    assert naive.metrics["forgetting"] > 0.9
    assert replay.metrics["acc"] > 0.85
    assert replay.metrics["acc"] - naive.metrics["acc"] > 0.6


def test_class_scenario_matrix_layout():
    r = learn(_cfg(strategies=["naive"], epochs=1))
    R = np.array(r.acc_matrix)
    assert R.shape == (5, 5)
    # Classes of experiences not yet seen have no output units: they cannot be answered.
    assert np.all(R[np.triu_indices(5, k=1)] == 0)
    assert r.random_acc[1:] == [0.0] * 4 and r.metrics["fwt"] == 0.0
    assert R[0, 0] > 0.9


@pytest.mark.parametrize("kw", [
    {"strategies": ["replay", "ewc"], "ewc": {"lam": 100.0, "fisher_samples": 64}},
    {"strategies": ["naive"], "scenario": "domain", "optimizer": "sgd", "momentum": 0.9, "lr": 0.01},
    {"strategies": ["independent"], "scenario": "task"},
    {"strategies": ["replay"], "replay": {"policy": "balanced", "size": 60}, "stream": "permuted",
     "tasks": 3, "scenario": "class"},
])
def test_resume_equals_uninterrupted_run(tmp_path, kw):
    assert_resume_is_exact(_cfg(epochs=2, **kw), tmp_path)  # "killed" after two experiences
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    for key in ("acc_matrix", "acc", "bwt", "fwt", "forgetting", "random_init_acc"):
        assert a[key] == b[key], key


def test_checkpoints_hold_plain_values_and_load_weights_only(tmp_path):
    cfg = _cfg(strategies=["replay"], epochs=1, tasks=2)
    Learner(cfg, run_dir=tmp_path / "r").run()
    path = latest_checkpoint(tmp_path / "r")
    assert path.name == "exp001.pt"
    raw = torch.load(path, weights_only=True)  # would raise on any pickled object
    assert raw["arch"]["name"] == "mlp" and raw["next_experience"] == 2
    assert raw["strategies"]["replay"]["buffer"]["x"].dtype == torch.uint8
    assert not list((tmp_path / "r").rglob("*.tmp"))


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    cfg = _cfg(epochs=1, tasks=2)
    run_interrupted(cfg, tmp_path / "r", 1)
    with pytest.raises(EdgelllError, match="different config"):
        Learner(_cfg(epochs=1, tasks=2, lr=0.5), run_dir=tmp_path / "r", resume=True)
    path = latest_checkpoint(tmp_path / "r")
    path.write_bytes(path.read_bytes()[:100])  # a torn file (only possible by hand)
    with pytest.raises(EdgelllError, match="exp000.pt"):
        load_checkpoint(path)


def test_compute_budget_caps_steps_and_flops():
    r = learn(_cfg(epochs=5, compute_steps=4))
    assert [e["steps"] for e in r.experiences] == [4] * 5
    full = learn(_cfg(epochs=1, strategies=["replay"]))
    limit = full.experiences[1]["flops"] // 2
    capped = learn(_cfg(epochs=1, strategies=["replay"], compute_flops=limit))
    for e in capped.experiences:
        assert 0 < e["flops"] <= limit
    assert capped.experiences[1]["steps"] < full.experiences[1]["steps"]


def test_steps_option_trains_exactly_that_many_steps():
    r = learn(_cfg(steps=7, epochs=1))
    assert [e["steps"] for e in r.experiences] == [7] * 5


def test_joint_trains_on_everything_seen_and_counts_it():
    r = learn(_cfg(strategies=["joint"], epochs=2))
    sizes = [e["samples"] for e in r.experiences]
    assert sizes == sorted(sizes) and sizes[-1] == 1433  # the last experience sees all data
    assert r.metrics["acc"] > 0.85
    assert r.memory["components"]["strategy:joint"] > 0


def test_arrays_from_python(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (80, 6), dtype=np.uint8)
    y = np.repeat(np.arange(4), 20)
    x[np.arange(80), y] = 255  # a learnable cue
    r = learn(_cfg(tasks=2, epochs=5, batch_size=8, strategies=["replay"]), data=(x, y, x, y))
    assert len(r.acc_matrix) == 2 and r.metrics["acc"] > 0.5

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
    assert raw["spec"]["name"] == "mlp" and raw["next_experience"] == 2
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


def test_a_run_from_before_a_setting_existed_resumes_with_its_default(tmp_path):
    # A run directory written before `optimizer_state` existed: its config.json and checkpoint
    # lack the key. Resuming it takes the default, and ends as the uninterrupted run does.
    cfg = _cfg(epochs=1, tasks=3)
    full = learn(cfg)
    run_interrupted(cfg, tmp_path / "r", 1)
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    del stored["optimizer_state"]
    (tmp_path / "r" / "config.json").write_text(json.dumps(stored))
    path = latest_checkpoint(tmp_path / "r")
    ckpt = load_checkpoint(path)
    del ckpt["config"]["optimizer_state"]
    torch.save(ckpt, path)
    resumed = Learner(cfg, run_dir=tmp_path / "r", resume=True).run()
    assert resumed.acc_matrix == full.acc_matrix


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


@pytest.mark.parametrize("scenario, mode, steps_at_end", [
    ("class", "auto", 3), ("class", "keep", 6), ("class", "reset", 3),  # the head grows
    ("domain", "auto", 6), ("domain", "keep", 6), ("domain", "reset", 3),  # nothing changes
])
def test_optimizer_state_between_experiences(scenario, mode, steps_at_end):
    # Adam's step count after two experiences of 3 steps each says whether its state carried over.
    learner = Learner(_cfg(scenario=scenario, tasks=2, steps=3, optimizer_state=mode))
    learner.run()
    state = learner.optimizer.state
    assert len(state) == len(list(learner.model.parameters()))
    assert {int(s["step"]) for s in state.values()} == {steps_at_end}


def test_kept_optimizer_state_carries_the_old_rows_and_zeros_the_grown_ones():
    learner = Learner(_cfg(tasks=2, steps=3, optimizer_state="keep"))
    first, second = learner.stream.experiences
    learner.learn_experience(first)
    old = {n: {k: v.clone() for k, v in learner.optimizer.state[p].items()}
           for n, p in learner.model.named_parameters()}
    learner._train = lambda exp, data: (0, 0, 0.0)  # grow the head and carry the state, no steps
    learner.learn_experience(second)
    head = learner.model.head.linear
    n_old = old["head.linear.weight"]["exp_avg"].shape[0]
    assert head.out_features > n_old
    for name, p in learner.model.named_parameters():
        new = learner.optimizer.state[p]
        assert torch.equal(new["step"], old[name]["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            assert new[key].shape == p.shape
            assert torch.equal(new[key][: old[name][key].shape[0]], old[name][key])
            assert not new[key][old[name][key].shape[0]:].any()  # the new classes' rows: zero


def test_kept_optimizer_state_resumes_exactly(tmp_path):
    assert_resume_is_exact(_cfg(epochs=1, optimizer_state="keep"), tmp_path, n=2)


def test_unknown_optimizer_state_is_refused():
    with pytest.raises(EdgelllError, match="optimizer_state"):
        _cfg(optimizer_state="sometimes")

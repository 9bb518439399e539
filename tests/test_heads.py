"""Heads that learn in closed form: the nearest-class-mean rule on numpy and torch, the ncm
strategy on a frozen backbone (no backward pass, no optimizer), its accounting and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgelll import resolve
from edgelll.learner import Learner, learn
from edgelll.runtime.rules import ncm_means, ncm_scores, ncm_update
from edgelll.strategies.replay import embed

from _resume import assert_resume_is_exact

TINY = {"hidden": (32,)}


def _cfg(**kw):
    base = {"strategies": ["ncm"], "epochs": 1, "tasks": 5, "model_args": TINY,
            "freeze_backbone_after": 0}
    base.update(kw)
    return resolve(base)


# -- the rule, once for numpy and torch --------------------------------------------------------

def test_ncm_rule_by_hand():
    feats = np.array([[2.0, 0.0], [0.0, 4.0], [1.0, 1.0], [3.0, 3.0]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    sums, counts = ncm_update(np.zeros((3, 2), np.float32), np.zeros(3, np.float32), feats, y)
    assert sums.tolist() == [[2.0, 4.0], [4.0, 4.0], [0.0, 0.0]] and counts.tolist() == [2, 2, 0]
    means, known = ncm_means(sums, counts)
    assert means.tolist() == [[1.0, 2.0], [2.0, 2.0], [0.0, 0.0]]
    assert known.tolist() == [True, True, False]
    scores = ncm_scores(np.array([[1.0, 2.0], [2.5, 2.0]], np.float32), means, known)
    # distances: (0, 1) and (1.5, 0.5); class 2 never seen: -inf
    np.testing.assert_allclose(scores[:, :2], [[0.0, -1.0], [-1.5, -0.5]], atol=1e-6)
    assert np.isneginf(scores[:, 2]).all()


@pytest.mark.parametrize("cosine", [False, True])
def test_numpy_and_torch_run_the_same_rule(cosine):
    rng = np.random.default_rng(0)
    sums, counts = np.zeros((6, 5), np.float32), np.zeros(6, np.float32)
    ts, tc = torch.zeros(6, 5), torch.zeros(6)
    for _ in range(4):  # several batches: running means
        f, y = rng.normal(size=(30, 5)).astype(np.float32), rng.integers(0, 5, 30)
        sums, counts = ncm_update(sums, counts, f, y, cosine)
        ts, tc = ncm_update(ts, tc, torch.from_numpy(f), torch.from_numpy(y), cosine)
    np.testing.assert_allclose(sums, ts.numpy(), rtol=1e-5, atol=1e-5)
    assert np.array_equal(counts, tc.numpy())
    q = rng.normal(size=(9, 5)).astype(np.float32)
    got_np = ncm_scores(q, *ncm_means(sums, counts, cosine), cosine)
    got_t = ncm_scores(torch.from_numpy(q), *ncm_means(ts, tc, cosine), cosine)
    np.testing.assert_allclose(got_np, got_t.numpy(), rtol=1e-5, atol=1e-5)
    assert np.array_equal(got_np.argmax(1), got_t.numpy().argmax(1))


# -- the strategy on a frozen backbone ---------------------------------------------------------

def test_frozen_backbone_under_ncm_trains_without_backward_or_optimizer():
    learner = Learner(_cfg())
    before = {k: v.clone() for k, v in learner.model.state_dict().items() if "head" not in k}
    result = learner.run()
    assert learner.optimizer is None  # nothing trainable: no optimizer was ever built
    after = learner.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # backbone untouched
    assert all(p.grad is None for p in learner.model.parameters())
    F_row, bs = learner.probe.forward_flops, learner.cfg.batch_size
    for e in learner.stats:  # one forward pass a row: no backward
        assert e["steps"] > 0 and e["flops"] <= e["steps"] * F_row * bs
    naive = learn(_cfg(strategies=["naive"], freeze_backbone_after=None))
    assert result.metrics["acc"] > 0.6 and result.metrics["acc"] > naive.metrics["acc"] + 0.3
    assert result.memory["components"]["gradients"] == 0
    assert result.memory["components"]["optimizer"] == 0


def test_one_epoch_gives_the_exact_class_means_of_the_experience():
    learner = Learner(_cfg(tasks=2))
    exp = learner.stream.experiences[0]
    learner.learn_experience(exp)
    head = learner.model.head.find("nearest-mean")
    data = exp.train_data()
    sums, counts = ncm_update(torch.zeros_like(head.sums), torch.zeros_like(head.counts),
                              embed(learner.model, data.x), data.y)
    torch.testing.assert_close(head.sums, sums, rtol=1e-5, atol=1e-4)
    assert torch.equal(head.counts, counts)


def test_backbone_learns_first_then_freezes_and_means_are_recomputed():
    learner = Learner(_cfg(freeze_backbone_after=1, tasks=3))
    first, second = learner.stream.experiences[:2]
    learner.learn_experience(first)
    assert learner.optimizer is not None  # experience 0: backbone and linear head learn
    head = learner.model.head.find("nearest-mean")
    data = first.train_data()
    feats = embed(learner.model, data.x)  # the backbone as it ended, not as it moved
    sums, _ = ncm_update(torch.zeros_like(head.sums), torch.zeros_like(head.counts), feats, data.y)
    torch.testing.assert_close(head.sums, sums, rtol=1e-5, atol=1e-4)
    frozen = {k: v.clone() for k, v in learner.model.backbone.state_dict().items()}
    learner.learn_experience(second)
    assert learner.optimizer is None
    assert all(torch.equal(v, learner.model.backbone.state_dict()[k]) for k, v in frozen.items())


def test_ncm_state_is_counted_planned_and_resumes_bit_identically(tmp_path):
    learner = Learner(_cfg())
    result = learner.run()
    head = learner.model.head.find("nearest-mean")
    assert head.sums.shape == (10, 32)
    buffers = sum(b.nbytes for b in learner.model.buffers())
    assert result.memory["components"]["buffers"] == buffers == learner.planned["buffers"]
    assert_resume_is_exact(_cfg(tasks=3), tmp_path)
    assert_resume_is_exact(_cfg(tasks=3, freeze_backbone_after=1, strategies=["replay", "ncm"],
                                replay={"size": 40}), tmp_path / "mixed")


def test_ncm_is_refused_in_the_task_scenario():
    from edgelll.errors import ConfigError
    with pytest.raises(ConfigError, match="task"):
        Learner(_cfg(scenario="task"))

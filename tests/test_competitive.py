"""Competitive learning (edgelll.runtime.competitive): one winner moves, clusters are found,
LVQ pushes the rival away, batches equal the sequential rule, numpy and torch agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgelll.runtime.competitive import (apply_moves, class_scores, cluster, competitive_update,
                                         farthest_points, unit_owner)


@pytest.mark.parametrize("by", ["distance", "response"])
def test_exactly_one_unit_moves_per_input(by):
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(6, 5)).astype(np.float32)
    wins = np.zeros(6, np.float32)
    for _ in range(30):
        x = rng.normal(size=(1, 5)).astype(np.float32)
        new, wins2 = competitive_update(protos, wins, x, lr=0.3, by=by)
        moved = np.flatnonzero((new != protos).any(axis=1))
        assert len(moved) == 1 and wins2.sum() == wins.sum() + 1
        w = moved[0]
        d = ((protos - x) ** 2).sum(1) if by == "distance" else -(protos @ x[0])
        assert w == d.argmin()  # the winner is the one that moved
        np.testing.assert_allclose(new[w], protos[w] + 0.3 * (x[0] - protos[w]), atol=1e-6)
        protos, wins = new, wins2


def test_unsupervised_learning_recovers_well_separated_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10], [10, 10, 10]], np.float32)
    truth = rng.integers(0, 4, size=400)
    x = (centres[truth] + rng.normal(size=(400, 3))).astype(np.float32)
    protos = farthest_points(x[:20], 4)
    wins = np.zeros(4, np.float32)
    for start in range(0, 400, 16):
        protos, wins = competitive_update(protos, wins, x[start:start + 16], lr=1.0, decay=1.0)
    assigned = ((x[:, None, :] - protos[None]) ** 2).sum(-1).argmin(1)
    # every cluster maps to one unit and back (a permutation): the partition is recovered
    pairs = set(zip(truth.tolist(), assigned.tolist()))
    assert len(pairs) == 4 and len({a for _, a in pairs}) == 4
    for k in range(4):  # lr 1, decay 1: each unit is the running mean of what it won
        np.testing.assert_allclose(protos[k], x[assigned == k].mean(0), atol=0.3)
        assert np.linalg.norm(protos[k] - centres[[t for t, a in pairs if a == k][0]]) < 0.5


def test_a_batch_equals_the_sequential_rule():
    rng = np.random.default_rng(2)
    protos = rng.normal(size=(3, 4)).astype(np.float32)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    steps = np.zeros((10, 3), np.float32)
    steps[np.arange(10), rng.integers(0, 3, size=10)] = rng.uniform(0.1, 1.0, size=10)
    steps[3, 0], steps[7, 2] = -0.2, 1.0  # a push away and a step that forgets the past
    seq = protos.copy()
    for k in range(10):
        seq += steps[k][:, None] * (x[k] - seq)
    np.testing.assert_allclose(apply_moves(protos, steps, x), seq, atol=1e-5)


def test_supervised_lvq_moves_the_own_class_winner_toward_and_the_rival_away():
    protos = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], np.float32)  # classes 0, 0, 1, 1
    owner = np.array([0, 0, 1, 1])
    x, y = np.array([[0.5, 3.0]], np.float32), np.array([0])
    new, wins = competitive_update(protos, np.zeros(4, np.float32), x, y, owner, lr=0.5, lvq=True)
    # own class's closest is unit 0 (not unit 2, the overall closest); rival is unit 2
    np.testing.assert_allclose(new[0], [0.25, 1.5])
    np.testing.assert_allclose(new[2], [-0.25, 4.5])
    assert (new[[1, 3]] == protos[[1, 3]]).all() and wins.tolist() == [1, 0, 0, 0]


def test_class_scores_take_the_nearest_unit_of_each_class():
    protos = np.array([[0, 0], [9, 9], [3, 0], [0, 5]], np.float32)
    s = class_scores(np.array([[1, 0]], np.float32), protos, 2, np.array([1, 1, 1, 0], bool))
    np.testing.assert_allclose(s, [[-1.0, -2.0]])
    assert unit_owner(2, 2, protos).tolist() == [0, 0, 1, 1]


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(3)
    protos = rng.normal(size=(6, 5)).astype(np.float32)
    owner = np.repeat(np.arange(3), 2)
    p, w = protos.copy(), np.zeros(6, np.float32)
    tp, tw = torch.from_numpy(protos.copy()), torch.zeros(6)
    for _ in range(6):
        x, y = rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, size=8)
        p, w = competitive_update(p, w, x, y, owner, lr=0.4, decay=0.5, lvq=True)
        tp, tw = competitive_update(tp, tw, torch.from_numpy(x), torch.from_numpy(y),
                                    torch.from_numpy(owner), lr=0.4, decay=0.5, lvq=True)
    np.testing.assert_allclose(tp.numpy(), p, atol=1e-5)
    assert tw.tolist() == w.tolist()
    q = rng.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(class_scores(torch.from_numpy(q), tp, 2).numpy(),
                               class_scores(q, p, 2), atol=1e-5)


def test_the_cluster_api_recovers_blobs_on_numpy_and_torch():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(3, 8)).astype(np.float32) * 10
    truth = rng.integers(0, 3, size=300)
    x = (centres[truth] + rng.normal(size=(300, 8))).astype(np.float32)
    protos, assign = cluster(x, 3)
    table = np.zeros((3, 3), int)
    np.add.at(table, (truth, assign), 1)
    assert (table.max(axis=1) == table.sum(axis=1)).all()  # every blob in one cluster
    assert len(set(table.argmax(axis=1).tolist())) == 3  # and each in its own
    tp, ta = cluster(torch.from_numpy(x), 3)
    np.testing.assert_allclose(tp.numpy(), protos, atol=1e-4)
    assert (ta.numpy() == assign).all()
    with pytest.raises(ValueError, match="into 4 groups"):
        cluster(x[:3], 4)


def test_cluster_agreement_against_hand_computed_tables():
    from edgelll.metrics import cluster_agreement

    # labels 0 0 0 1 1 1 into clusters {0 0}, {0 1}, {1 1}: purity (2 + 1 + 2) / 6; pairs
    # together in both 2 of 15, expected 6 * 3 / 15 = 1.2, mean of the pair sums (6 + 3) / 2, so
    # ARI (2 - 1.2) / (4.5 - 1.2); MI (2/3) ln 2 over the mean entropy (ln 2 + ln 3) / 2
    got = cluster_agreement([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1])
    assert got["purity"] == pytest.approx(5 / 6)
    assert got["ari"] == pytest.approx(0.8 / 3.3)
    assert got["nmi"] == pytest.approx((2 / 3) * np.log(2) / (np.log(6) / 2))
    # a relabelled perfect recovery scores 1 on all three; one cluster for two classes does not
    assert cluster_agreement([7, 7, 3, 3], [0, 0, 1, 1]) == {"purity": 1.0, "nmi": 1.0, "ari": 1.0}
    lumped = cluster_agreement([0, 0, 0, 0], [0, 0, 1, 1])
    assert lumped["purity"] == 0.5 and lumped["nmi"] == 0.0 and lumped["ari"] == 0.0

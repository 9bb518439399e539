"""Neural gas (edgelll.runtime.neural_gas): rank-schedule steps, competitive Hebbian edges that
age out, age-stabilised old nodes, numpy and torch agreeing."""

from __future__ import annotations

import math

import numpy as np
import torch

from edgelll.runtime.neural_gas import ng_update, rank_steps, update_edges


def _none(m):
    return np.full((m, m), -1.0, np.float32)


def test_steps_follow_the_rank_schedule_on_a_hand_made_example():
    nodes = np.array([[0.0], [1.0], [3.0], [6.0]], np.float32)
    x = np.array([[2.2]], np.float32)  # distances 2.2, 1.2, 0.8, 3.8: ranks 2, 1, 0, 3
    new, ages, _ = ng_update(nodes, np.zeros(4, np.float32), _none(4), x, eps=0.5, lam=2.0,
                             tau=1e9)
    h = 0.5 * np.exp(-np.array([2, 1, 0, 3]) / 2.0)
    np.testing.assert_allclose(new[:, 0], nodes[:, 0] + h * (2.2 - nodes[:, 0]), atol=1e-6)
    assert ages.tolist() == [0, 0, 1, 0]  # the closest node won
    # every step shrinks with rank: the closest moves most, in fraction of its distance
    frac = (new[:, 0] - nodes[:, 0]) / (2.2 - nodes[:, 0])
    assert list(np.argsort(-frac)) == [2, 1, 0, 3]


def test_old_nodes_steps_shrink_with_age():
    dist = np.array([[1.0, 1.0]], np.float32)
    s = rank_steps(dist, np.array([0.0, 300.0], np.float32), eps=0.4, lam=1.0, tau=100.0)
    # equal rank 0 and 1 aside, node 1 is 4x slower: 1 / (1 + 300 / 100)
    np.testing.assert_allclose(s, [[0.4, 0.4 * math.exp(-1) / 4]], rtol=1e-6)


def test_supervised_only_the_own_class_ranks_and_moves():
    nodes = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.1]], np.float32)
    owner, alive = np.array([0, 0, 1]), np.array([True, True, True])
    x, y = np.array([[0.6, 0.0]], np.float32), np.array([0])
    new, ages, edges = ng_update(nodes, np.zeros(3, np.float32), _none(3), x, y, owner, alive,
                                 eps=0.5, lam=1.0, tau=1e9)
    assert (new[2] == nodes[2]).all() and ages.tolist() == [0, 1, 0]  # node 1: own closest
    # the edge links the two closest of the whole gas (nodes 2 and 1), whatever their class
    assert edges[1, 2] == 0 and edges[2, 1] == 0 and (np.delete(edges.ravel(), [5, 7]) < 0).all()


def test_edges_appear_between_the_two_winners_and_age_out():
    edges = _none(4)
    edges = update_edges(edges, np.array([0]), np.array([1]), max_age=2)
    assert edges[0, 1] == 0 and edges[1, 0] == 0 and (edges >= 0).sum() == 2
    # node 0 keeps winning with node 2 second: (0, 2) is refreshed, (0, 1) ages by one each time
    edges = update_edges(edges, np.array([0, 0]), np.array([2, 2]), max_age=2)
    assert edges[0, 1] == 2 and edges[0, 2] == 0 and edges[2, 0] == 0
    edges = update_edges(edges, np.array([0]), np.array([2]), max_age=2)
    assert edges[0, 1] == -1 and edges[1, 0] == -1  # older than max_age: removed
    assert edges[0, 2] == 0 and (edges >= 0).sum() == 2
    # a win of node 3 ages no edge of 0 and links 3 to its runner-up
    edges = update_edges(edges, np.array([3]), np.array([2]), max_age=2)
    assert edges[0, 2] == 0 and edges[2, 3] == 0 and edges[3, 2] == 0
    assert (edges == edges.T).all()


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(4)
    nodes = rng.normal(size=(8, 5)).astype(np.float32)
    owner, alive = np.repeat(np.arange(4), 2), np.array([1, 1, 1, 0, 1, 1, 1, 1], bool)
    state = (nodes.copy(), np.zeros(8, np.float32), _none(8))
    tstate = (torch.from_numpy(nodes.copy()), torch.zeros(8), torch.from_numpy(_none(8)))
    for _ in range(5):
        x, y = rng.normal(size=(6, 5)).astype(np.float32), rng.integers(0, 4, size=6)
        state = ng_update(*state, x, y, owner, alive, eps=0.3, lam=1.5, tau=5.0, max_age=3)
        tstate = ng_update(*tstate, torch.from_numpy(x), torch.from_numpy(y),
                           torch.from_numpy(owner), torch.from_numpy(alive), eps=0.3, lam=1.5,
                           tau=5.0, max_age=3)
    for a, b in zip(state, tstate):
        np.testing.assert_allclose(b.numpy(), a, atol=1e-5)
    assert (state[0][3] == nodes[3]).all()  # a dead slot never moves


def _sequential_edges(edges, first, second, max_age):
    """The competitive Hebbian rule pair by pair, as written (the reference for the closed form)."""
    edges = edges.copy()
    for i, j in zip(first.tolist(), second.tolist()):
        if i == j:
            continue
        row = np.where(edges[i] >= 0, edges[i] + 1, edges[i])
        row[row > max_age] = -1
        row[j] = 0
        edges[i], edges[:, i] = row, row
    return edges


def test_batched_edges_equal_the_pair_by_pair_rule():
    rng = np.random.default_rng(7)
    for trial in range(40):
        m = int(rng.integers(3, 9))
        start = _sequential_edges(_none(m), rng.integers(0, m, 30), rng.integers(0, m, 30), 4)
        n = int(rng.integers(1, 60))  # few nodes, many pairs: repeats, resets and removals
        first, second = rng.integers(0, m, n), rng.integers(0, m, n)
        max_age = float(rng.choice([0, 1, 2.5, 4, 100]))
        want = _sequential_edges(start, first, second, max_age)
        got = update_edges(start, first, second, max_age)
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
        assert (start == _sequential_edges(start, first[:0], second[:0], 0)).all()  # untouched
        tgot = update_edges(torch.from_numpy(start), torch.from_numpy(first),
                            torch.from_numpy(second), max_age)
        np.testing.assert_array_equal(tgot.numpy(), want)
    inplace = start.copy()
    assert update_edges(inplace, first, second, max_age, inplace=True) is inplace
    np.testing.assert_array_equal(inplace, want)


def test_class_major_slots_give_the_masked_rule():
    """``per_class`` (ranks and moves on each input's own k slots, inputs grouped by class) is
    the masked rule over all M nodes: ages and edges bit for bit, nodes to rounding; on
    balanced batches (the grouped product), skewed ones (the dense fallback), dead slots and a
    class with no living node, in numpy and torch."""
    from edgelll.runtime.competitive import unit_owner

    rng = np.random.default_rng(11)
    for trial in range(60):
        classes, k, d = int(rng.integers(1, 12)), int(rng.integers(1, 5)), 6
        m = classes * k
        nodes = rng.normal(size=(m, d)).astype(np.float32)
        alive = np.ones(m, bool) if trial % 3 == 0 else rng.random(m) < 0.7
        ages = rng.integers(0, 40, m).astype(np.float32)
        edges = _sequential_edges(_none(m), rng.integers(0, m, 20), rng.integers(0, m, 20), 6)
        n = int(rng.integers(1, 50))
        y = (rng.integers(0, classes, n) if trial % 2 else
             np.where(rng.random(n) < 0.8, 0, rng.integers(0, classes, n)))  # skewed
        x = rng.normal(size=(n, d)).astype(np.float32)
        args = dict(eps=0.3, lam=1.5, tau=5.0, max_age=4)
        want = ng_update(nodes, ages, edges, x, y, unit_owner(classes, k, y), alive, **args)
        got = ng_update(nodes, ages, edges, x, y, None, alive, per_class=k, **args)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-6, err_msg=str(trial))
        np.testing.assert_array_equal(got[1], want[1], err_msg=str(trial))
        np.testing.assert_array_equal(got[2], want[2], err_msg=str(trial))
        assert (got[0][~alive] == nodes[~alive]).all()  # a dead slot keeps its bits
        tgot = ng_update(*(torch.from_numpy(a) for a in (nodes, ages, edges, x, y)), None,
                         torch.from_numpy(alive), per_class=k, **args)
        for a, b in zip(want, tgot):
            np.testing.assert_allclose(b.numpy(), a, rtol=1e-5, atol=1e-5, err_msg=str(trial))

"""The gradient-free heads in the device runtime (edgelll.runtime.gradient_free): classes from a
few shots, learning, the split-head file and device state round trips, the node cap."""

from __future__ import annotations

import numpy as np
import pytest

from edgelll.errors import DataError
from edgelll.runtime import format as fmt
from edgelll.runtime.gradient_free import empty_head
from edgelll.runtime.heads import NCMHead, head_from_arrays
from edgelll.runtime.state import load_state, save_state

KINDS = {"hebbian": {}, "hebbian-oja": {"oja": True, "lr": 0.05},
         "competitive": {"per_class": 2, "lvq": True},
         "neural-gas": {"per_class": 3, "max_nodes": 20}, "slda": {"shrink": 0.3}}


def _kind(name):
    return name.split("-oja")[0]


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 12)).astype(np.float32) * 4 + 6  # positive, as ReLU features
    y = rng.integers(0, 5, size=300)
    return (centres[y] + rng.normal(size=(300, 12))).astype(np.float32), y + 10  # labels 10..14


def _grown(name, x, y):
    head = empty_head(_kind(name), x.shape[1], **KINDS[name])
    for label in np.unique(y):
        head.add_class(x[y == label][:5], int(label), name=f"c{label}")
    return head


@pytest.mark.parametrize("name", KINDS)
def test_classes_from_five_shots_are_predicted_and_learning_keeps_them(name, blobs):
    x, y = blobs
    head = _grown(name, x, y)
    assert head.labels.tolist() == [10, 11, 12, 13, 14] and head.names[12] == "c12"
    acc = (head.labels[head.scores(x[100:]).argmax(1)] == y[100:]).mean()
    assert acc > 0.9
    before = head.to_arrays()
    for start in range(0, 100, 25):
        head.learn(x[start:start + 25], y[start:start + 25])
    after = head.to_arrays()
    assert any(not np.array_equal(before[k], after[k]) for k in before
               if isinstance(before[k], np.ndarray) and k not in ("labels", "tasks"))
    assert (head.labels[head.scores(x[100:]).argmax(1)] == y[100:]).mean() >= acc - 0.02
    with pytest.raises(DataError, match="not a class of this head"):
        head.learn(x[:2], np.array([10, 99]))


@pytest.mark.parametrize("name", KINDS)
def test_the_head_file_and_the_device_state_give_the_same_scores(name, blobs, tmp_path):
    x, y = blobs
    head = _grown(name, x, y)
    head.learn(x[:50], y[:50])
    fmt.save_head(tmp_path / "h.npz", head.to_arrays())
    back = head_from_arrays(fmt.load_head(tmp_path / "h.npz"))
    assert type(back) is type(head) and back.params == head.params
    np.testing.assert_array_equal(back.scores(x), head.scores(x))
    save_state(tmp_path / "s.npz", head, None, None)
    again, _ = load_state(tmp_path / "s.npz", x.shape[1])
    np.testing.assert_array_equal(again.scores(x), head.scores(x))
    again.learn(x[50:60], y[50:60])  # and it keeps learning as the original does
    head.learn(x[50:60], y[50:60])
    np.testing.assert_array_equal(again.scores(x), head.scores(x))


def test_arrays_that_disagree_are_refused(blobs):
    x, y = blobs
    arrays = _grown("competitive", x, y).to_arrays()
    arrays["wins"] = arrays["wins"][:-1]
    with pytest.raises(DataError, match="disagree"):
        head_from_arrays(arrays)
    ncm = NCMHead(np.ones((1, 3)), np.ones(1), [0], [-1]).to_arrays()  # the old kinds still load
    assert head_from_arrays(ncm).kind == "ncm"


def test_the_neural_gas_node_cap_holds(blobs):
    x, y = blobs
    head = empty_head("neural-gas", x.shape[1], per_class=3, max_nodes=7)
    head.add_class(x[y == 10][:5], 10)
    head.add_class(x[y == 11][:5], 11)
    head.add_class(x[y == 12][:5], 12)  # one node left
    assert head.alive.sum() == 7 and head.alive[6:].tolist() == [True, False, False]
    assert head.labels[head.scores(x[y == 12][5:]).argmax(1)].tolist().count(12) > 0
    with pytest.raises(DataError, match="full .7 of 7 nodes"):
        head.add_class(x[y == 13][:5], 13)
    assert len(head.labels) == 3  # nothing changed


@pytest.mark.parametrize("name", ["hebbian", "hebbian-oja", "competitive", "neural-gas"])
def test_the_batch_one_path_is_bitwise_the_rule(name, blobs):
    x, y = blobs
    x = x + np.random.default_rng(9).normal(size=x.shape).astype(np.float32) * 3  # overlaps:
    # LVQ's push (competitive runs with lvq) happens on some samples
    fast, slow = _grown(name, x, y), _grown(name, x, y)
    moved_two = 0
    for i in range(40):
        before = fast.to_arrays()
        fast.learn(x[i:i + 1], y[i:i + 1])  # the numpy batch-1 path
        if name == "competitive":
            moved_two += int((fast.protos != before["protos"]).any(axis=1).sum() == 2)
        # and the array-API rule itself on the same sample
        rows = slow.rows_of(y[i:i + 1])
        if name == "hebbian":
            from edgelll.runtime.hebbian import hebbian_update
            slow.weight, slow.counts = hebbian_update(slow.weight, slow.counts, x[i:i + 1], rows)
        elif name == "hebbian-oja":
            from edgelll.runtime.hebbian import oja_update
            slow.weight, slow.counts = oja_update(slow.weight, slow.counts, x[i:i + 1], rows,
                                                  slow.params["lr"])
        elif name == "neural-gas":
            from edgelll.runtime.competitive import unit_owner
            from edgelll.runtime.neural_gas import ng_update
            p = slow.params
            slow.nodes, slow.ages, slow.edge_age = ng_update(
                slow.nodes, slow.ages, slow.edge_age, x[i:i + 1], rows,
                unit_owner(5, p["per_class"], rows), slow.alive, p["eps"], p["lam"], p["tau"],
                p["max_age"])
        else:
            from edgelll.runtime.competitive import competitive_update, unit_owner
            p = slow.params
            slow.protos, slow.wins = competitive_update(
                slow.protos, slow.wins, x[i:i + 1], rows, unit_owner(5, p["per_class"], rows),
                p["lr"], p["decay"], p["by"], p["lvq"])
    for k, v in fast.to_arrays().items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, slow.to_arrays()[k], err_msg=k)
    assert name != "competitive" or moved_two > 0  # LVQ's push was exercised
    if getattr(fast, "_sq", None) is not None:  # the kept squared norms are the units' own
        units = fast.protos if name == "competitive" else fast.nodes
        np.testing.assert_array_equal(fast._sq, np.vecdot(units, units))


@pytest.mark.parametrize("name", ["hebbian", "competitive", "neural-gas"])
def test_a_head_grown_class_by_class_equals_one_rebuilt_at_every_class(name, blobs):
    # add_class writes into spare capacity and keeps the units' norms; a head rebuilt from its
    # arrays before every class (no spare room, no kept norms) must end bit for bit the same
    x, y = blobs
    rng = np.random.default_rng(3)
    grown = empty_head(_kind(name), x.shape[1], **{**KINDS[name], "max_nodes": 0}
                       if name == "neural-gas" else KINDS[name])
    rebuilt = head_from_arrays(grown.to_arrays())
    for label in range(60):
        shots = x[rng.integers(0, len(x), 5)] + rng.normal(size=(5, x.shape[1])).astype(np.float32)
        rebuilt = head_from_arrays(rebuilt.to_arrays())
        for head in (grown, rebuilt):
            head.add_class(shots, label)
            head.learn(shots[:1], np.array([label]))  # the batch-1 path reads the kept norms
            if label % 10 == 4:  # now and then a batch, whose rule replaces the units array
                head.learn(shots[1:3], np.array([label, label]))
    a, b = grown.to_arrays(), rebuilt.to_arrays()
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, b[k], err_msg=k)
    if name == "hebbian":
        return  # no kept norms; its batch-1 learn leaves the buffer (checked below)
    units = grown.protos if name == "competitive" else grown.nodes
    assert units.base is not None  # it grew inside its buffer
    assert grown._sq_of is units  # and the norms kept through it are the units' own
    np.testing.assert_array_equal(grown._sq, np.vecdot(units, units))


def test_hebbian_add_class_is_the_running_mean_rule_in_spare_room(blobs):
    # add_class's in-place update is hebbian_update with the new row taking the shots, and a
    # head taught class after class grows inside one buffer (no copy of W per class)
    from edgelll.runtime.hebbian import hebbian_update

    x, _ = blobs
    rng = np.random.default_rng(4)
    head = empty_head("hebbian", x.shape[1])
    ref_w, ref_n = head.weight.copy(), head.counts.copy()
    buffers = []
    for label in range(200):
        shots = x[rng.integers(0, len(x), 5)]
        head.add_class(shots, label)
        ref_w = np.concatenate([ref_w, np.zeros((1, x.shape[1]), np.float32)])
        ref_n = np.append(ref_n, np.float32(0))
        ref_w, ref_n = hebbian_update(ref_w, ref_n, shots, np.full(5, label))
        if not buffers or head.weight.base is not buffers[-1]:
            buffers.append(head.weight.base)
    np.testing.assert_allclose(head.weight, ref_w, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(head.counts, ref_n)
    assert all(b is not None for b in buffers)  # the rows live in a buffer with spare room
    assert len(buffers) < 50  # made O(log) times (an eighth more room each), not once a class

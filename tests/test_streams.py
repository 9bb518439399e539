"""Tests for edgelll.streams: split/permuted/rotated streams in the class/task/domain scenarios."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgelll.data import from_arrays
from edgelll.errors import ConfigError, DataError
from edgelll.streams import make_stream


def _data(n_classes: int = 6, per_train: int = 4, per_test: int = 2, seed: int = 0):
    """uint8 images (N, 1, 4, 4); pixel 0 of every image encodes its sample id, pixel 1 its class.

    Train sample ids are 0..N-1; test sample ids start at 100 so train and test never mix up.
    """
    rng = np.random.default_rng(seed)

    def split(per: int, id0: int):
        y = np.repeat(np.arange(n_classes), per)
        rng.shuffle(y)
        x = rng.integers(0, 256, (len(y), 1, 4, 4), dtype=np.uint8)
        x[:, 0, 0, 0] = id0 + np.arange(len(y))
        x[:, 0, 0, 1] = y
        return x, y

    x_tr, y_tr = split(per_train, 0)
    x_te, y_te = split(per_test, 100)
    return from_arrays(x_tr, y_tr, x_te, y_te, name="toy")


def _classes_of(x: torch.Tensor) -> list[int]:
    return x[:, 0, 0, 1].tolist()


# ---------------------------------------------------------------------------------------------
# split, class scenario


def test_split_class_natural_order_global_labels_and_growing_head():
    data = _data()
    s = make_stream(data, "split", "class", 3)
    assert len(s) == 3 and s.scenario == "class" and not s.uses_task_ids
    assert [e.classes for e in s.experiences] == [(0, 1), (2, 3), (4, 5)]
    assert [e.head_size for e in s.experiences] == [2, 4, 6]
    assert [e.label_offset for e in s.experiences] == [0, 2, 4]
    assert s.class_order == [0, 1, 2, 3, 4, 5]
    for e in s.experiences:
        b = e.train_data()
        # With the natural order the global label is the original class.
        assert b.y.tolist() == _classes_of(b.x)
        assert sorted(set(b.y.tolist())) == list(e.classes)
        assert b.t.tolist() == [e.task_id] * len(b)
        assert e.y_test.tolist() == _classes_of(e.x_test)
        assert len(b) == 2 * 4 and len(e.y_test) == 2 * 2


def test_split_class_given_order_relabels_in_order():
    data = _data()
    s = make_stream(data, "split", "class", 3, class_order="2,0,1,5,4,3")
    assert s.class_order == [2, 0, 1, 5, 4, 3]
    e0 = s.experiences[0]
    assert e0.classes == (2, 0)
    b = e0.train_data()
    mapping = {c: y for c, y in zip(_classes_of(b.x), b.y.tolist())}
    assert mapping == {2: 0, 0: 1}
    # Later experiences continue the global label space in class-order position.
    lut = {c: i for i, c in enumerate([2, 0, 1, 5, 4, 3])}
    for e in s.experiences:
        b = e.train_data()
        assert b.y.tolist() == [lut[c] for c in _classes_of(b.x)]
        assert e.y_test.tolist() == [lut[c] for c in _classes_of(e.x_test)]
    assert [e.classes for e in s.experiences] == [(2, 0), (1, 5), (4, 3)]


def test_split_random_order_is_seeded():
    data = _data()
    orders = {seed: make_stream(data, "split", "class", 3, "random", seed=seed).class_order
              for seed in range(8)}
    assert make_stream(data, "split", "class", 3, "random", seed=3).class_order == orders[3]
    for order in orders.values():
        assert sorted(order) == list(range(6))
    assert len({tuple(o) for o in orders.values()}) > 1  # different seeds give other orders


def test_uneven_split_covers_every_class_once():
    data = _data(n_classes=5)
    s = make_stream(data, "split", "class", 2)
    groups = [e.classes for e in s.experiences]
    assert sorted(c for g in groups for c in g) == [0, 1, 2, 3, 4]
    assert sorted(len(g) for g in groups) == [2, 3]
    assert s.experiences[-1].head_size == 5
    total = sum(len(e.train_data()) for e in s.experiences)
    assert total == len(data.y_train)


# ---------------------------------------------------------------------------------------------
# split, task and domain scenarios


@pytest.mark.parametrize("scenario", ["task", "domain"])
def test_split_task_and_domain_use_local_labels(scenario):
    data = _data()
    s = make_stream(data, "split", scenario, 3, class_order="2,0,1,5,4,3")
    assert s.uses_task_ids == (scenario == "task")
    for i, e in enumerate(s.experiences):
        assert e.task_id == i and e.index == i and e.label_offset == 0
        local = {c: k for k, c in enumerate(e.classes)}
        b = e.train_data()
        assert b.y.tolist() == [local[c] for c in _classes_of(b.x)]
        assert set(b.y.tolist()) == {0, 1}
        assert b.t.tolist() == [i] * len(b)
        assert e.y_test.tolist() == [local[c] for c in _classes_of(e.x_test)]
        tb = e.test_batch()
        assert tb.t.tolist() == [i] * len(tb)


def test_domain_head_size_is_max_classes_per_task():
    s = make_stream(_data(n_classes=5), "split", "domain", 2)
    assert [e.n_local_classes for e in s.experiences] == [3, 2]
    assert [e.head_size for e in s.experiences] == [3, 3]


# ---------------------------------------------------------------------------------------------
# test sets and dtype


def test_test_sets_hold_exactly_the_experience_classes_and_stay_uint8():
    data = _data()
    s = make_stream(data, "split", "class", 3, class_order="5,1,0,3,2,4")
    seen_ids = []
    for e in s.experiences:
        ids = e.x_test[:, 0, 0, 0].tolist()
        want = sorted(100 + i for i, c in enumerate(data.y_test) if c in e.classes)
        assert sorted(ids) == want
        seen_ids += ids
        assert e.x_test.dtype == torch.uint8
        assert e.train_data().x.dtype == torch.uint8
        # Samples are the data set's own pixels, not a converted copy.
        for row in e.x_test:
            assert np.array_equal(row.numpy(), data.x_test[int(row[0, 0, 0]) - 100])
    assert sorted(seen_ids) == list(range(100, 100 + len(data.y_test)))
    assert s.dtype == torch.uint8


# ---------------------------------------------------------------------------------------------
# permuted


def test_permuted_task0_identity_and_fixed_permutation_on_train_and_test():
    data = _data()
    s = make_stream(data, "permuted", "domain", 3, seed=5)
    e0, e1, e2 = s.experiences
    assert torch.equal(e0.train_data().x, torch.from_numpy(data.x_train))
    assert torch.equal(e0.x_test, torch.from_numpy(data.x_test))
    # One image with distinct values in every pixel reveals the permutation as a mapping.
    probe = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4) * 10
    ds = from_arrays(np.concatenate([probe, probe]), np.array([0, 1]),
                     np.concatenate([probe, probe]), np.array([0, 1]))
    p = make_stream(ds, "permuted", "domain", 3, seed=5)
    tr = p.experiences[1].train_data().x[0].flatten() // 10
    te = p.experiences[1].x_test[0].flatten() // 10
    assert torch.equal(tr, te)  # the same permutation on train and test
    assert sorted(tr.tolist()) == list(range(16)) and tr.tolist() != list(range(16))
    # The mapping found on the probe is what task 1 applies to every image of the real data.
    perm = tr.long()
    flat_tr = torch.from_numpy(data.x_train).reshape(len(data.y_train), -1)
    flat_te = torch.from_numpy(data.x_test).reshape(len(data.y_test), -1)
    assert torch.equal(e1.train_data().x.reshape(len(flat_tr), -1), flat_tr[:, perm])
    assert torch.equal(e1.x_test.reshape(len(flat_te), -1), flat_te[:, perm])
    assert e1.train_data().x.dtype == torch.uint8
    # Other tasks get other permutations; the same seed gives the same ones.
    assert not torch.equal(e1.x_test, e2.x_test)
    again = make_stream(data, "permuted", "domain", 3, seed=5)
    assert torch.equal(again.experiences[1].x_test, e1.x_test)
    assert torch.equal(again.experiences[2].train_data().x, e2.train_data().x)
    other = make_stream(data, "permuted", "domain", 3, seed=6)
    assert not torch.equal(other.experiences[1].x_test, e1.x_test)
    # Labels: the class is unchanged by the permutation (domain: local labels = class index).
    assert e1.train_data().y.tolist() == data.y_train.tolist()
    assert [e.head_size for e in s.experiences] == [6, 6, 6]


def test_permuted_class_scenario_offsets_labels():
    data = _data()
    s = make_stream(data, "permuted", "class", 3)
    for t, e in enumerate(s.experiences):
        assert e.label_offset == 6 * t and e.head_size == 6 * (t + 1)
        assert e.train_data().y.tolist() == (data.y_train + 6 * t).tolist()
        assert e.y_test.tolist() == (data.y_test + 6 * t).tolist()
        assert e.train_data().t.tolist() == [t] * len(data.y_train)


# ---------------------------------------------------------------------------------------------
# rotated


def test_rotated_quarter_turn_moves_a_bright_pixel():
    x = np.zeros((2, 1, 4, 4), dtype=np.uint8)
    x[:, 0, 0, 1] = 255  # row 0, column 1
    ds = from_arrays(x, np.array([0, 1]), x.copy(), np.array([0, 1]))
    s = make_stream(ds, "rotated", "domain", 2)  # task 1: 180 * 1 / 2 = 90 degrees
    e0, e1 = s.experiences
    assert torch.equal(e0.x_test, torch.from_numpy(x))
    assert torch.equal(e0.train_data().x, torch.from_numpy(x))
    out = e1.train_data().x
    assert out.dtype == torch.uint8 and e1.x_test.dtype == torch.uint8
    want = torch.zeros_like(out)
    want[:, 0, 2, 0] = 255  # counter-clockwise: (row 0, col 1) -> (row 2, col 0)
    assert torch.equal(out, want)
    assert torch.equal(out, torch.rot90(torch.from_numpy(x), 1, dims=(2, 3)))
    assert torch.equal(e1.x_test, want)


def test_rotated_half_turn_of_real_images():
    data = _data()
    # tasks=4: task 2 rotates 90 degrees, so rot90 is the exact answer for every image.
    s = make_stream(data, "rotated", "task", 4)
    got = s.experiences[2].train_data().x
    assert torch.equal(got, torch.rot90(torch.from_numpy(data.x_train), 1, dims=(2, 3)))


def test_rotated_needs_images():
    rng = np.random.default_rng(0)
    ds = from_arrays(rng.integers(0, 255, (4, 5), dtype=np.uint8), np.array([0, 1, 0, 1]),
                     rng.integers(0, 255, (2, 5), dtype=np.uint8), np.array([0, 1]))
    with pytest.raises(DataError):
        make_stream(ds, "rotated", "domain", 2)


# ---------------------------------------------------------------------------------------------
# normalisation


def _prepare(stream):
    """The run's model preprocessing: the stream's constants, applied inside the model."""
    from edgelll.config import resolve
    from edgelll.learner import new_model
    return new_model(resolve({"scenario": stream.scenario, "model_args": {"hidden": (4,)}}),
                     stream).preprocess


def test_prepare_normalises_with_training_statistics():
    data = _data(per_train=20)
    s = make_stream(data, "split", "class", 3)
    prepare = _prepare(s)
    x = prepare(torch.from_numpy(data.x_train))
    assert x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-5
    assert abs(float(x.double().std(unbiased=False)) - 1.0) < 1e-5
    assert s.mean == pytest.approx(float(data.x_train.mean()))
    # Test data uses the training constants, not its own.
    xt = prepare(torch.from_numpy(data.x_test))
    want = (data.x_test.astype(np.float64) - data.x_train.mean()) / data.x_train.std()
    assert np.allclose(xt.numpy(), want, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# errors


def test_more_tasks_than_classes_is_a_config_error():
    with pytest.raises(ConfigError, match="7 tasks"):
        make_stream(_data(), "split", "class", 7)


@pytest.mark.parametrize("order", ["2,0,1,5,4", "0,1,2,3,4,5,6", "0,0,1,2,3,4", "a,b", "0,1,2,3,4,9"])
def test_bad_class_order_is_a_config_error(order):
    with pytest.raises(ConfigError):
        make_stream(_data(), "split", "class", 3, class_order=order)


def test_unknown_stream_is_a_config_error():
    with pytest.raises(ConfigError):
        make_stream(_data(), "shuffled", "class", 3)


def test_test_classes_missing_from_train_are_a_data_error():
    d = _data()
    y_test = d.y_test.copy()
    y_test[0] = 9
    with pytest.raises(DataError, match="never seen"):
        from_arrays(d.x_train, d.y_train, d.x_test, y_test)


def test_gaps_in_labels_are_split_without_empty_classes():
    # Labels 0, 3, 7 only: the class order is built from the training labels, so every class of
    # every task has training samples (the "task has no training samples" DataError in _split
    # cannot be reached through make_stream).
    d = _data()
    keep_tr = np.isin(d.y_train, [0, 3, 5])
    keep_te = np.isin(d.y_test, [0, 3, 5])
    ds = from_arrays(d.x_train[keep_tr], d.y_train[keep_tr], d.x_test[keep_te], d.y_test[keep_te])
    s = make_stream(ds, "split", "class", 3)
    assert [e.classes for e in s.experiences] == [(0,), (3,), (5,)]
    for e in s.experiences:
        b = e.train_data()
        assert len(b) == 4 and set(b.y.tolist()) == {e.index}
    with pytest.raises(ConfigError):
        make_stream(ds, "split", "class", 3, class_order="0,1,3")  # 1 has no samples


def test_split_guard_for_a_class_without_training_samples():
    # Not reachable through make_stream (see above); the guard itself still has to work.
    from edgelll.streams import _split

    x = torch.zeros((4, 1, 2, 2), dtype=torch.uint8)
    y = torch.tensor([0, 1, 3, 3])
    with pytest.raises(DataError, match=r"task 1 has no training samples of class\(es\) \[2\]"):
        _split(x, y, x, y, [0, 1, 2, 3], 2, "class")


def test_prepare_normalises_float_data_too():
    rng = np.random.default_rng(3)
    x_tr = rng.normal(50.0, 3.0, (40, 1, 4, 4)).astype(np.float32)
    x_te = rng.normal(50.0, 3.0, (10, 1, 4, 4)).astype(np.float32)
    ds = from_arrays(x_tr, np.arange(40) % 2, x_te, np.arange(10) % 2)
    s = make_stream(ds, "split", "domain", 1)
    assert s.dtype == torch.float32
    x = _prepare(s)(torch.from_numpy(x_tr))
    assert abs(float(x.double().mean())) < 1e-4
    assert abs(float(x.double().std(unbiased=False)) - 1.0) < 1e-4
    assert s.mean == pytest.approx(float(x_tr.astype(np.float64).mean()), rel=1e-9)
    assert s.std == pytest.approx(float(x_tr.astype(np.float64).std()), rel=1e-6)

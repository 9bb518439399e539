"""The device runtime's numpy parts against hand-computed values: the NCM and linear heads, weight
imprinting, task routing, the reservoir buffer (byte budget, Algorithm R one at a time, seeded
uniformity), input checks and the session's refusals."""

from __future__ import annotations

import numpy as np
import pytest

from edgelll.errors import ConfigError, DataError
from edgelll.runtime import LinearHead, NCMHead, ReservoirBuffer, head_from_arrays, make_session
from edgelll.runtime.inputs import InputSpec, label_array, task_array


def test_ncm_head_hand_computed():
    head = NCMHead(np.zeros((2, 2)), np.zeros(2), labels=[7, 9], tasks=[-1, -1])
    head.learn(np.array([[1, 0], [3, 0], [0, 2]], np.float32), np.array([7, 7, 9]))
    assert head.sums.tolist() == [[4, 0], [0, 2]] and head.counts.tolist() == [2, 1]
    s = head.scores(np.array([[2, 1]], np.float32))  # means (2, 0) and (0, 2)
    np.testing.assert_allclose(s, [[-1.0, -np.sqrt(5.0)]], rtol=1e-6)
    head.add_class(np.array([[2, 1], [4, 1]], np.float32), label=3, name="three")
    assert head.labels.tolist() == [7, 9, 3] and head.names == {3: "three"}
    np.testing.assert_allclose(head.scores(np.array([[3, 1]], np.float32))[0, 2], 0.0, atol=1e-6)


def test_ncm_cosine_ranks_by_angle():
    head = NCMHead(np.zeros((2, 2)), np.zeros(2), [0, 1], [-1, -1], cosine=True)
    head.learn(np.array([[10, 0], [0, 0.1]], np.float32), np.array([0, 1]))
    # (1, 2) is closer to (0, 1) in angle though far from (0, 0.1)'s length
    assert head.scores(np.array([[1, 2]], np.float32)).argmax() == 1
    np.testing.assert_allclose(head.scores(np.array([[0, 5]], np.float32))[0, 1], 0.0, atol=1e-6)


def test_linear_head_step_hand_computed():
    head = LinearHead(np.zeros((2, 2)), np.zeros(2), labels=[4, 8], tasks=[-1, -1], lr=0.1)
    head.learn(np.array([[1, 2]], np.float32), np.array([4]))
    # z = 0, p = (.5, .5), dL/dz = (-.5, .5), dW = dz^T phi
    np.testing.assert_allclose(head.weight, [[0.05, 0.1], [-0.05, -0.1]], rtol=1e-6)
    np.testing.assert_allclose(head.bias, [0.05, -0.05], rtol=1e-6)
    head.learn(np.array([[1, 2], [2, 0]], np.float32), np.array([8, 8]), lr=0.0)
    np.testing.assert_allclose(head.bias, [0.05, -0.05], rtol=1e-6)  # lr=0 leaves it


def test_imprinting_row_is_the_formula():
    head = LinearHead([[3, 0], [0, 5]], [1, 3], labels=[0, 1], tasks=[-1, -1])
    shots = np.array([[2, 0], [0, 1]], np.float32)
    head.add_class(shots, label=5)
    # direction: normalised shots (1,0), (0,1) -> mean (.5,.5) -> (1,1)/sqrt2; bias: mean 2.
    # Strongest old logits on the shots 7 and 8, dots with the direction sqrt2 and 1/sqrt2, so
    # the scale is 1.01 * max(5/sqrt2, 6 sqrt2) and the row 1.01 * 6 * (1, 1).
    np.testing.assert_allclose(head.weight[2], [6.06, 6.06], rtol=1e-6)
    assert head.bias[2] == np.float32(2.0) and head.labels.tolist() == [0, 1, 5]
    assert head.weight.dtype == np.float32 and head.bias.dtype == np.float32
    assert head.labels[head.scores(shots).argmax(1)].tolist() == [5, 5]  # predicted at once


def test_task_routing_masks_other_tasks_and_finds_rows():
    head = LinearHead(np.eye(4, 3), np.zeros(4), labels=[0, 1, 0, 1], tasks=[0, 0, 1, 1])
    s = head.scores(np.ones((2, 3), np.float32), task_ids=np.array([1, 0]))
    assert np.isinf(s[0, :2]).all() and np.isfinite(s[0, 2:]).all()
    assert np.isinf(s[1, 2:]).all() and np.isfinite(s[1, :2]).all()
    assert head.rows_of([1, 1, 0], [1, 0, 1]).tolist() == [3, 1, 2]


def test_unknown_label_is_one_line_pointing_to_learn_class():
    head = NCMHead(np.zeros((2, 2)), np.zeros(2), [0, 1], [-1, -1])
    with pytest.raises(DataError, match="learn_class") as err:
        head.learn(np.ones((1, 2), np.float32), [6])
    assert "\n" not in str(err.value) and head.counts.tolist() == [0, 0]


def test_head_arrays_round_trip_bitwise():
    rng = np.random.default_rng(1)
    for head in (LinearHead(rng.normal(size=(3, 5)), rng.normal(size=3), [2, 0, 1], [-1] * 3),
                 NCMHead(rng.random((3, 5)), [1, 2, 3], [2, 0, 1], [-1] * 3, cosine=True)):
        back = head_from_arrays(head.to_arrays())
        f = rng.normal(size=(4, 5)).astype(np.float32)
        assert back.scores(f).tobytes() == head.scores(f).tobytes()


def test_buffer_byte_budget_is_exact():
    buf = ReservoirBuffer(1000, (10,), np.float32)  # 40 B + 8 B of label and task per item
    assert buf.capacity == 20 and buf.nbytes == 20 * 48
    buf.add(np.ones((50, 10), np.float32), np.arange(50))
    assert buf.nbytes == 960 and buf.size == 20 and buf.seen == 50
    assert ReservoirBuffer(47, (10,)).capacity == 0
    with pytest.raises(ConfigError):
        ReservoirBuffer(-1, (10,))


def test_buffer_batch_equals_algorithm_r_one_at_a_time():
    items = np.arange(300, dtype=np.float32).reshape(-1, 1)
    a, b = ReservoirBuffer(24 * 12, (1,), seed=3), ReservoirBuffer(24 * 12, (1,), seed=3)
    for lo in range(0, 300, 37):
        a.add(items[lo:lo + 37], np.arange(lo, min(lo + 37, 300)))
    for i in range(300):
        b.add(items[i:i + 1], [i])
    assert a.capacity == 24 and a.x.tobytes() == b.x.tobytes() and a.y.tolist() == b.y.tolist()


def test_buffer_keeps_every_item_with_equal_probability():
    n, cap, trials = 1000, 20, 400
    hits = np.zeros(n)
    for seed in range(trials):
        buf = ReservoirBuffer(cap * 12, (1,), seed=seed)
        for lo in range(0, n, 64):  # uneven batches
            buf.add(np.zeros((min(64, n - lo), 1), np.float32), np.arange(lo, min(lo + 64, n)))
        hits[buf.y] += 1
    per_bin = hits.reshape(10, 100).sum(1)  # expected cap * trials / 10 = 800 each
    chi2 = ((per_bin - 800) ** 2 / 800).sum()
    assert chi2 < 27.9  # chi-square, 9 degrees of freedom, p = 0.001
    assert hits.sum() == cap * trials


def test_buffer_state_round_trip_resumes_sampling():
    buf = ReservoirBuffer(12 * 8, (1,), seed=5)
    buf.add(np.arange(30, dtype=np.float32)[:, None], np.arange(30))
    back = ReservoirBuffer.from_arrays(*buf.to_arrays())
    assert back.x.tobytes() == buf.x.tobytes() and back.seen == 30
    assert [a.tolist() for a in back.sample(5)] == [a.tolist() for a in buf.sample(5)]


def test_input_shapes_and_dtypes():
    spec = InputSpec([1, 8, 8], "uint8", "nchw")
    x = np.zeros((3, 1, 8, 8), np.uint8)
    assert spec.batch(x) is x
    assert spec.batch(np.zeros((3, 8, 8), np.uint8)).shape == (3, 1, 8, 8)  # missing axis of 1
    assert spec.batch(np.zeros((8, 8), np.uint8)).shape == (1, 1, 8, 8)  # one sample
    assert spec.batch(np.zeros((1, 8, 8), np.uint8)).shape == (1, 1, 8, 8)
    with pytest.raises(DataError, match=r"takes \(N, 1, 8, 8\) uint8"):
        spec.batch(np.zeros((3, 1, 8, 7), np.uint8))
    with pytest.raises(DataError, match="dtype float32.*uint8"):
        spec.batch(np.zeros((3, 1, 8, 8), np.float32))
    assert InputSpec([4], "float32").batch(np.zeros((2, 4), np.uint8)).dtype == np.float32
    with pytest.raises(DataError, match="task id 3"):
        task_array([0, 3], 2, 2)
    with pytest.raises(DataError, match="2 labels for 3"):
        label_array([1, 2], 3)
    assert label_array(4, 3).tolist() == [4, 4, 4]


def test_session_refuses_bad_files_and_settings(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    for name, message in (("junk.onnx", "not a valid ONNX model"), ("none.onnx", "does not exist")):
        with pytest.raises(DataError, match=message) as err:
            make_session(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not available"):
        make_session(tmp_path / "junk.onnx", providers=("NoSuchExecutionProvider",))
    with pytest.raises(ConfigError, match="at least 1"):
        make_session(tmp_path / "junk.onnx", threads=0)


@pytest.mark.parametrize("cosine", [False, True])
def test_ncm_one_sample_path_is_bitwise_ncm_update(cosine):
    from edgelll.runtime.rules import ncm_update

    rng = np.random.default_rng(2)
    sums, counts = rng.random((4, 6)).astype(np.float32), np.full(4, 2, np.float32)
    head = NCMHead(sums, counts, [5, 6, 7, 8], [-1] * 4, cosine=cosine)
    f = rng.normal(size=(1, 6)).astype(np.float32)
    head.learn(f, [7])
    s, c = ncm_update(sums, counts, f, np.array([2]), cosine)
    assert head.sums.tobytes() == s.tobytes() and head.counts.tobytes() == c.tobytes()


def test_labels_outside_the_table_are_refused():
    head = NCMHead(np.zeros((2, 2)), np.zeros(2), [0, 1], [-1, -1])
    for bad in (-1, 2, 10**9):
        with pytest.raises(DataError, match=f"label {bad} "):
            head.learn(np.ones((1, 2), np.float32), [bad])

"""The Hebbian associative rule and Oja's rule (edgelll.runtime.hebbian), on numpy and torch."""

from __future__ import annotations

import numpy as np
import torch

from edgelll.runtime.hebbian import hebbian_scores, hebbian_update, oja_init, oja_update


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_hebbian_weights_equal_the_formula_on_hand_made_vectors():
    x = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [5.0, 0.0]], np.float32)
    y = np.array([0, 1, 1, 0, 2])
    w, c = np.zeros((3, 2), np.float32), np.zeros(3, np.float32)
    # in two uneven batches: the running mean must be the formula over all p = 5 samples
    w, c = hebbian_update(w, c, x[:2], y[:2])
    w, c = hebbian_update(w, c, x[2:], y[2:])
    xn, t = _unit(x), np.eye(3)[y]
    expected = t.T @ xn / len(x)  # w_ij = (1/p) sum_k x_i^k y_j^k
    np.testing.assert_allclose(w, expected, atol=1e-6)
    assert c.tolist() == [2, 2, 1]
    # hand check of one entry: class 0 has (0.6, 0.8) and (0.7071, 0.7071), p = 5
    assert abs(w[0, 0] - (0.6 + 2 ** -0.5) / 5) < 1e-6


def test_a_new_class_just_adds_a_row():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype(np.float32), np.array([0, 1] * 4)
    w, c = hebbian_update(np.zeros((2, 4), np.float32), np.zeros(2, np.float32), x, y)
    w3 = np.concatenate([w, np.zeros((1, 4), np.float32)])
    c3 = np.append(c, np.float32(0))
    x_new = rng.normal(size=(3, 4)).astype(np.float32)
    w3, c3 = hebbian_update(w3, c3, x_new, np.full(3, 2))
    allx, ally = np.concatenate([x, x_new]), np.concatenate([y, np.full(3, 2)])
    np.testing.assert_allclose(w3, np.eye(3)[ally].T @ _unit(allx) / 11, atol=1e-6)


def test_balanced_response_is_the_class_mean_response():
    x = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0]], np.float32)
    y = np.array([0, 0, 0, 1])
    w, c = hebbian_update(np.zeros((3, 2), np.float32), np.zeros(3, np.float32), x, y)
    q = np.array([[0.6, 0.8]], np.float32)
    raw, bal = hebbian_scores(q, w, c, balanced=False), hebbian_scores(q, w, c)
    # raw: class 0 has 3 of 4 samples and wins; balanced: class 1's mean (0, 1) is closer
    assert raw[0].argmax() == 0 and bal[0].argmax() == 1
    np.testing.assert_allclose(bal[0, :2], q[0] @ (np.eye(3)[y].T @ _unit(x))[:2].T / [3, 1],
                               atol=1e-6)
    assert np.isneginf(bal[0, 2])  # never seen


def test_oja_keeps_the_weight_norm_bounded():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=16)
    w = np.zeros((2, 16), np.float32)
    x0 = (mean + 0.3 * rng.normal(size=(5, 16))).astype(np.float32)
    w[0] = oja_init(x0, w)
    w[1] = oja_init(-x0, w)
    c = np.zeros(2, np.float32)
    norms = []
    for _ in range(400):
        x = (mean + 0.5 * rng.normal(size=(4, 16))).astype(np.float32)
        y = rng.integers(0, 2, size=4)
        x[y == 1] *= -1
        w, c = oja_update(w, c, x, y, lr=0.05)
        norms.append(np.linalg.norm(w, axis=1))
    norms = np.array(norms)
    assert norms.max() < 1.05 and abs(norms[-1] - 1).max() < 0.02
    # each unit points along its own class's principal direction
    assert (w[0] @ mean) / np.linalg.norm(mean) > 0.8 and (w[1] @ mean) < 0


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(2)
    w, c = np.zeros((4, 6), np.float32), np.zeros(4, np.float32)
    tw, tc = torch.zeros(4, 6), torch.zeros(4)
    ow, oc = rng.normal(size=(4, 6)).astype(np.float32), np.zeros(4, np.float32)
    tow, toc = torch.from_numpy(ow.copy()), torch.zeros(4)
    for _ in range(5):
        x = rng.normal(size=(7, 6)).astype(np.float32)
        y = rng.integers(0, 4, size=7)
        w, c = hebbian_update(w, c, x, y)
        tw, tc = hebbian_update(tw, tc, torch.from_numpy(x), torch.from_numpy(y))
        ow, oc = oja_update(ow, oc, x, y, 0.05)
        tow, toc = oja_update(tow, toc, torch.from_numpy(x), torch.from_numpy(y), 0.05)
    q = rng.normal(size=(9, 6)).astype(np.float32)
    np.testing.assert_allclose(tw.numpy(), w, atol=1e-5)
    np.testing.assert_allclose(tow.numpy(), ow, atol=1e-5)
    np.testing.assert_allclose(hebbian_scores(torch.from_numpy(q), tw, tc).numpy(),
                               hebbian_scores(q, w, c), atol=1e-5)

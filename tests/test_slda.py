"""Streaming LDA (edgelll.runtime.slda): the running scatter is the pooled within-class scatter
whatever the batches, the metric is --whiten's map of that scatter, a shared covariance turns a
decision NCM gets wrong, and numpy and torch agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgelll.errors import DataError
from edgelll.runtime.gradient_free import empty_head
from edgelll.runtime.heads import head_from_arrays
from edgelll.runtime.rules import ncm_means, ncm_scores
from edgelll.runtime.slda import slda_metric, slda_prepare, slda_scores, slda_update, within_scatter
from edgelll.runtime.whiten import fit_whitening


def _pooled(x, y):
    """sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T, in float64, class by class."""
    x = np.asarray(x, np.float64)
    out = np.zeros((x.shape[1], x.shape[1]))
    for c in np.unique(y):
        d = x[y == c] - x[y == c].mean(0)
        out += d.T @ d
    return out


@pytest.fixture
def blobs():
    rng = np.random.default_rng(4)
    y = rng.permutation(np.arange(90) % 3)
    x = rng.normal(size=(90, 6)) * np.array([3.0, 1.0, 0.5, 2.0, 0.2, 1.0]) + 5.0
    x[:, 0] += 4.0 * y  # class means apart, spreads anisotropic and far from the origin
    return x.astype(np.float32), y


def test_the_running_scatter_is_the_pooled_within_class_scatter_whatever_the_batches(blobs):
    x, y = blobs
    expect = _pooled(x, y)
    head = empty_head("slda", 6)
    first = [np.flatnonzero(y == c)[:2] for c in range(3)]
    for c, rows in enumerate(first):
        head.add_class(x[rows], c)
    rest = np.setdiff1d(np.arange(90), np.concatenate(first))
    for start, size in ((0, 1), (1, 7), (8, 1), (9, 40), (49, 35)):  # batch-1 path and batches
        part = rest[start:start + size]
        head.learn(x[part], y[part])
    assert head.counts.tolist() == [30, 30, 30]
    np.testing.assert_allclose(head.scatter, expect, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(head.sums / head.counts[:, None],
                               [x[y == c].mean(0) for c in range(3)], rtol=1e-5, atol=1e-5)
    one = slda_update(np.zeros((3, 6), np.float32), np.zeros(3, np.float32),
                      np.zeros((6, 6), np.float32), x, y)[2]  # one batch
    np.testing.assert_allclose(one, expect, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(within_scatter(x, y, 3), expect, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("shrink", [0.0, 0.3, 10.0])
def test_scores_are_ncm_after_the_whitening_of_the_same_scatter(blobs, shrink):
    x, y = blobs
    head = empty_head("slda", 6, shrink=shrink)
    for c in range(3):
        head.add_class(x[y == c], c)
    white = fit_whitening(x, y, shrink)
    np.testing.assert_allclose(slda_metric(head.scatter, shrink), white.proj, rtol=1e-4,
                               atol=1e-4)
    q = np.random.default_rng(5).normal(size=(20, 6)).astype(np.float32) * 3 + 6
    means, known = ncm_means(white(np.stack([x[y == c].mean(0) for c in range(3)])),
                             np.ones(3, np.float32))
    np.testing.assert_allclose(head.scores(q), ncm_scores(white(q), means, known), rtol=1e-4,
                               atol=1e-4)


def test_a_shared_covariance_turns_a_decision_nearest_mean_gets_wrong():
    # two classes spread widely along the first axis and narrowly along the second, means
    # (0, 0) and (3, 1); (0.2, 0.8) is nearer class 0's mean, but 4 narrow standard deviations
    # off it and 1.15 (in the metric) from class 1's
    spread = np.array([[-5.0, -0.2], [5.0, 0.2], [-5.0, 0.2], [5.0, -0.2]], np.float32)
    head, ncm = empty_head("slda", 2, shrink=0.0), empty_head("slda", 2, shrink=1e9)
    for c, mean in enumerate(([0.0, 0.0], [3.0, 1.0])):
        for h in (head, ncm):
            h.add_class(spread + np.float32(mean), c)
    q = np.array([[0.2, 0.8]], np.float32)
    assert ncm.scores(q).argmax() == 0 and head.scores(q).argmax() == 1
    # distances in the metric, by hand: d^2 = dx^2 / var_x + dy^2 / var_y (P scaled by
    # sqrt(m) with m the mean variance: S/8 has variances 25 and 0.04)
    m = (25.0 + 0.04) / 2
    d = -head.scores(q)[0] / np.sqrt(m)
    np.testing.assert_allclose(d, [np.hypot(0.2 / 5, 0.8 / 0.2), np.hypot(2.8 / 5, 0.2 / 0.2)],
                               rtol=1e-4)


def test_a_seeded_scatter_is_a_prior_that_new_classes_add_to(blobs):
    x, y = blobs
    head = empty_head("slda", 6, shrink=0.3)
    old = y < 2
    head.seed_scatter(x[old], y[old] + 10)  # labels of classes the head never holds
    assert len(head) == 0 and head.params["prior"] == old.sum()
    head.add_class(x[y == 2], 2)
    np.testing.assert_allclose(head.scatter, _pooled(x, y), rtol=1e-4, atol=1e-3)
    with pytest.raises(DataError, match="two samples"):
        head.seed_scatter(x[:3], [0, 1, 2])
    back = head_from_arrays(head.to_arrays())  # the prior travels with the head
    assert back.params == head.params and np.array_equal(back.scatter, head.scatter)
    with pytest.raises(DataError, match="settings do not fit"):
        head_from_arrays({**head.to_arrays(), "scatter": np.zeros((5, 5), np.float32)})


def test_torch_and_numpy_agree(blobs):
    x, y = blobs
    state = (np.zeros((3, 6), np.float32), np.zeros(3, np.float32), np.zeros((6, 6), np.float32))
    tstate = tuple(torch.from_numpy(a.copy()) for a in state)
    for start in range(0, 90, 13):
        xb, yb = x[start:start + 13], y[start:start + 13]
        state = slda_update(*state, xb, yb)
        tstate = slda_update(*tstate, torch.from_numpy(xb), torch.from_numpy(yb))
    for a, t in zip(state, tstate):  # sums to ~500, scatter entries to ~4000
        np.testing.assert_allclose(t.numpy(), a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    q = x[::7]
    same = tuple(torch.from_numpy(a.copy()) for a in state)  # the scoring rule on one state
    for shrink in (0.0, 1.0):
        got = slda_scores(torch.from_numpy(q), *slda_prepare(*same, shrink)).numpy()
        np.testing.assert_allclose(got, slda_scores(q, *slda_prepare(*state, shrink)), atol=1e-5,
                                   rtol=1e-5)
    # and after each library's own updates
    for shrink in (0.0, 1.0):
        got = slda_scores(torch.from_numpy(q), *slda_prepare(*tstate, shrink)).numpy()
        np.testing.assert_allclose(got, slda_scores(q, *slda_prepare(*state, shrink)), atol=1e-5,
                                   rtol=1e-5)


def test_an_empty_scatter_is_the_identity_and_plain_ncm():
    head = empty_head("slda", 3)
    head.add_class(np.array([[1.0, 0.0, 0.0]], np.float32), 0)
    head.add_class(np.array([[0.0, 2.0, 0.0]], np.float32), 1)  # one shot each: no spread yet
    assert not head.scatter.any()
    np.testing.assert_array_equal(slda_metric(head.scatter, 1.0), np.eye(3, dtype=np.float32))
    np.testing.assert_allclose(head.scores(np.array([[0.0, 0.0, 0.0]], np.float32)),
                               [[-1.0, -2.0]], rtol=1e-6)


@pytest.mark.gpu
def test_the_rule_runs_on_cuda_as_on_numpy(blobs):
    x, y = blobs
    state = (np.zeros((3, 6), np.float32), np.zeros(3, np.float32), np.zeros((6, 6), np.float32))
    cuda = tuple(torch.from_numpy(a.copy()).cuda() for a in state)
    state = slda_update(*state, x, y)
    cuda = slda_update(*cuda, torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    got = slda_scores(torch.from_numpy(x).cuda(), *slda_prepare(*cuda, 0.3)).cpu().numpy()
    np.testing.assert_allclose(got, slda_scores(x, *slda_prepare(*state, 0.3)), atol=1e-4,
                               rtol=1e-5)


def test_the_shrink_setting_is_auto_or_a_number_at_least_zero():
    from edgelll.errors import ConfigError
    from edgelll.strategies import strategy_params

    assert strategy_params("slda", {})["shrink"] is None
    assert strategy_params("slda", {"shrink": "auto"})["shrink"] is None
    assert strategy_params("slda", {"shrink": "0.5"})["shrink"] == 0.5
    for bad, word in (("-1", ">= 0"), ("abc", "auto or a number"), ("inf", "slda.shrink")):
        with pytest.raises(ConfigError, match=word):
            strategy_params("slda", {"shrink": bad})


def test_a_run_learns_every_sample_once_and_auto_picks_the_shrink_on_the_base():
    import edgelll
    from edgelll.data import load_dataset
    from edgelll.learner import Learner
    from edgelll.runtime.whiten import SHRINK_GRID, choose_shrink
    from edgelll.strategies.replay import embed

    cfg = edgelll.resolve({"strategies": ["slda"], "epochs": 3, "stream": "fscil",
                           "base_classes": 5, "ways": 1, "shots": 5, "sessions": 2,
                           "model_args": {"hidden": (32,)}, "freeze_backbone_after": 1,
                           "device": "cpu"})
    learner = Learner(cfg, data=load_dataset("digits"))
    learner.run()
    head = learner.model.head.find("slda")
    chosen = learner.metrics()["strategies"]["slda"]["head"]["shrink"]
    assert chosen in SHRINK_GRID and head.params["shrink"] == chosen
    parts = [e.train_data() for e in learner.stream.experiences]
    feats = [embed(learner.model, b.x).numpy() for b in parts]  # the backbone frozen since
    assert choose_shrink(feats[0], parts[0].y.numpy(), 5, cfg.seed)[0] == chosen
    # three epochs a session, yet each shot counted once: the scatter of every sample, once
    x, y = np.concatenate(feats), np.concatenate([b.y.numpy() for b in parts])
    assert head.counts[5:7].tolist() == [5, 5] and head.counts.sum() == len(y)
    np.testing.assert_allclose(head.scatter.numpy(), _pooled(x, y), rtol=1e-4,
                               atol=1e-4 * np.abs(head.scatter.numpy()).max())


def test_whiten_beside_slda_is_refused_in_one_line():
    import edgelll
    from edgelll.errors import ConfigError

    with pytest.raises(ConfigError, match="slda fits such a map itself.*drop --whiten") as err:
        edgelll.resolve({"strategies": ["slda"], "whiten": "auto", "freeze_backbone_after": 1})
    assert "\n" not in str(err.value)

"""Within-class whitening (``--whiten``, :mod:`edgelll.runtime.whiten`): the map against a
hand-computed one, full whitening makes the pooled within-class scatter isotropic and a large
shrinkage leaves the features as they are, the auto choice sees only the data it is given, a
run fits it on the first experience and the heads learn through it (resumed bit for bit,
exported and predicted with by the torch-free runtime as torch does), and bad input is refused
with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import edgelll
from edgelll.data import load_dataset
from edgelll.errors import ConfigError, DataError
from edgelll.export import ExportOptions, export_run
from edgelll.runtime import Model, NCMHead
from edgelll.runtime.whiten import SHRINK_GRID, choose_shrink, fit_whitening

from _resume import assert_resume_is_exact


def _two_crosses():
    """Two classes, each the four points (+-1, 0), (0, +-2) around its mean (0, 0) or (10, 0):
    within-class variances 0.5 along x and 2 along y, no covariance; m = 1.25."""
    cross = np.array([[1, 0], [-1, 0], [0, 2], [0, -2]], np.float64)
    return np.concatenate([cross, cross + [10, 0]]), np.array([0] * 4 + [1] * 4)


@pytest.mark.parametrize("shrink", [0.0, 1.0])
def test_the_map_is_the_hand_computed_one(shrink):
    x, y = _two_crosses()
    fit = fit_whitening(x, y, shrink)
    m = 1.25
    want = np.diag([np.sqrt((1 + shrink) * m / (0.5 + shrink * m)),
                    np.sqrt((1 + shrink) * m / (2.0 + shrink * m))])
    np.testing.assert_allclose(fit.proj, want, atol=1e-6)
    np.testing.assert_allclose(fit.mean, [5.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(fit(x[:1]), (x[:1] - [5, 0]) @ want, atol=1e-5)
    assert fit.shrink == shrink and fit.scores is None


def _anisotropic(n_classes=4, per=200, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) * np.geomspace(0.1, 10, dim)  # correlated, unequal spread
    means = rng.normal(scale=3, size=(n_classes, dim))
    x = np.concatenate([rng.normal(size=(per, dim)) @ mix + mu for mu in means])
    return x, np.repeat(np.arange(n_classes), per)


def test_full_whitening_makes_the_within_class_scatter_isotropic_and_large_shrinkage_centres():
    x, y = _anisotropic()
    fit = fit_whitening(x, y, 0.0)
    z = fit(x).astype(np.float64)
    centred = z - np.stack([z[y == c].mean(0) for c in np.unique(y)])[y]
    scatter = centred.T @ centred / len(z)
    raw = x - np.stack([x[y == c].mean(0) for c in np.unique(y)])[y]
    m = np.trace(raw.T @ raw / len(x)) / x.shape[1]
    np.testing.assert_allclose(scatter, m * np.eye(x.shape[1]), rtol=1e-4, atol=1e-4 * m)
    np.testing.assert_array_equal(fit.proj, fit.proj.T)
    loose = fit_whitening(x, y, 1e7)
    np.testing.assert_allclose(loose.proj, np.eye(x.shape[1]), atol=1e-5)
    np.testing.assert_allclose(loose(x), x - x.mean(0), rtol=1e-4, atol=1e-3)


def _loud_nuisance(seed=0):
    """Classes apart along a quiet feature, with a loud feature that varies within every class
    and carries no class: raw distances hear the loud one."""
    rng = np.random.default_rng(seed)
    n_classes, per = 8, 60
    quiet = np.repeat(np.arange(n_classes) * 1.0, per) + rng.normal(scale=0.2, size=n_classes * per)
    loud = rng.normal(scale=6.0, size=n_classes * per)
    x = np.stack([quiet, loud, rng.normal(scale=0.2, size=n_classes * per)], 1)
    return x, np.repeat(np.arange(n_classes), per)


def _ncm_accuracy(train_x, train_y, test_x, test_y):
    head = NCMHead(np.zeros((0, train_x.shape[1]), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64), np.zeros(0, np.int64))
    for c in np.unique(train_y):
        head.add_class(train_x[train_y == c].astype(np.float32), int(c))
    pred = head.labels[np.argmax(head.scores(test_x.astype(np.float32)), 1)]
    return float((pred == test_y).mean())


def test_whitening_fitted_on_base_classes_helps_new_classes_learned_from_five_shots():
    x, y = _loud_nuisance()
    base = y < 4
    fit = fit_whitening(x[base], y[base], "auto", shots=5)
    assert fit.shrink <= 0.1  # the base data alone says: whiten hard
    assert set(fit.scores) == set(SHRINK_GRID)
    shots = np.concatenate([np.flatnonzero(y == c)[:5] for c in range(4, 8)])
    test = np.concatenate([np.flatnonzero(y == c)[5:] for c in range(8)])
    train = np.concatenate([np.flatnonzero(base), shots])
    raw = _ncm_accuracy(x[train], y[train], x[test], y[test])
    white = _ncm_accuracy(fit(x[train]), y[train], fit(x[test]), y[test])
    assert white > raw + 0.2 and white > 0.9, (raw, white)


def test_the_auto_choice_is_the_best_score_and_depends_only_on_the_data_and_seed():
    x, y = _anisotropic(seed=1)
    shrink, scores = choose_shrink(x, y, shots=5, seed=3)
    best = max(scores.values())
    assert shrink == max(s for s, v in scores.items() if round(v, 12) == round(best, 12))
    assert choose_shrink(x, y, shots=5, seed=3) == (shrink, scores)
    assert fit_whitening(x, y, "auto", shots=5, seed=3).shrink == shrink


@pytest.mark.parametrize("x, y, shrink, says", [
    (np.ones((4, 2)), np.zeros(4), "auto", "at least 2 classes"),
    (np.ones((2, 2)), np.arange(2), 0.0, "more samples than classes"),
    (_two_crosses()[0], _two_crosses()[1], -1.0, "a number >= 0"),
    (np.full((8, 2), np.nan), _two_crosses()[1], 0.0, "not all finite"),
    (np.ones((8, 2)), np.zeros(7), 0.0, "one label per feature row"),
])
def test_bad_input_to_the_fit_is_one_clear_error(x, y, shrink, says):
    with pytest.raises(DataError, match=says):
        fit_whitening(x, y, shrink)


# -- in a run ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _cfg(strategy="ncm", **kw):
    return edgelll.resolve({"strategies": [strategy], "epochs": 1, "tasks": 5,
                            "model_args": {"hidden": (32,)}, "freeze_backbone_after": 1,
                            "device": "cpu", "whiten": "auto", **kw})


def _data(d):
    return (d.x_train, d.y_train, d.x_test, d.y_test)


def test_a_run_fits_the_map_on_the_first_experience_and_the_head_learns_through_it(digits,
                                                                                 tmp_path):
    cfg = _cfg()
    result = edgelll.learn(cfg, data=_data(digits), run_dir=tmp_path / "run", plot="none")
    model = result.model
    first = edgelll.learn(edgelll.resolve({**cfg.to_dict(), "whiten": None}), data=_data(digits),
                          run_dir=tmp_path / "plain", plot="none").model
    # the backbone of the first experience is the same with or without the map
    for (k, a), b in zip(first.backbone.state_dict().items(), model.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    from edgelll.streams import make_stream
    stream = make_stream(digits, "split", "class", 5, cfg.class_order, cfg.seed, "cpu", None)
    base = stream.experiences[0].train_data()
    with torch.no_grad():
        raw = model.backbone(model.preprocess(base.x)).numpy()
    fit = fit_whitening(raw, base.y.numpy(), "auto", shots=cfg.shots, seed=cfg.seed)
    np.testing.assert_array_equal(model.whiten.proj.numpy(), fit.proj)
    np.testing.assert_array_equal(model.whiten.mean.numpy(), fit.mean)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["whiten"]["shrink"] == fit.shrink
    assert metrics["experiences"][0]["whiten"]["shrink"] == fit.shrink
    assert "whiten" not in metrics["experiences"][1]
    dim = model.feat_dim
    assert metrics["memory_bytes"]["planned"]["buffers"] >= (dim * dim + dim) * 4
    # the NCM head's means are those of the whitened features of every class seen
    x_all = torch.cat([e.train_data().x for e in stream.experiences])
    y_all = torch.cat([e.train_data().y for e in stream.experiences])
    with torch.no_grad():
        white = model.forward_features(x_all).numpy()
    np.testing.assert_allclose(white, fit(model.backbone(model.preprocess(x_all)).detach()
                                          .numpy()), rtol=1e-4, atol=1e-4)
    head, units = model.head.find("nearest-mean"), model.labels["units"]
    for row in (0, len(units) - 1):
        np.testing.assert_allclose((head.sums[row] / head.counts[row]).numpy(),
                                   white[y_all.numpy() == units[row]].mean(0), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("strategy", ["ncm", "neural-gas"])
def test_a_whitened_run_resumes_bit_for_bit(strategy, tmp_path):
    extra = {"neural-gas": {"per_class": 3}} if strategy == "neural-gas" else {}
    assert_resume_is_exact(_cfg(strategy, **extra), tmp_path, n=1)


def test_the_exported_extractor_whitens_and_the_runtime_predicts_as_torch(digits, tmp_path):
    edgelll.learn(_cfg("hebbian"), data=_data(digits), run_dir=tmp_path / "run", plot="none")
    entry = export_run(tmp_path / "run", ExportOptions(split=True))
    runtime = Model.load(tmp_path / "run" / "export" / entry["file"])
    torch_model = edgelll.load_model(tmp_path / "run")
    with torch.no_grad():
        want = torch_model.forward_features(torch.as_tensor(digits.x_test)).numpy()
    np.testing.assert_allclose(runtime.features(digits.x_test), want, rtol=1e-4, atol=1e-4)
    agree = runtime.predict(digits.x_test) == torch_model.predict(digits.x_test).numpy()
    assert agree.mean() >= 0.995


@pytest.mark.parametrize("settings, says", [
    ({"freeze_backbone_after": None}, "give --freeze-backbone-after 1"),
    ({"freeze_backbone_after": 2}, "give --freeze-backbone-after 1 (got 2)"),
    ({"strategies": ["naive"]}, "add one of them with -s"),
    ({"whiten": -1}, "whiten must be auto or a shrinkage >= 0"),
    ({"whiten": "loud"}, "whiten must be auto or a shrinkage >= 0"),
])
def test_bad_settings_are_refused_in_one_line(settings, says):
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        edgelll.resolve({"strategies": ["ncm"], "freeze_backbone_after": 1, "whiten": "auto",
                         **settings})


def test_the_cli_refuses_a_whitening_without_a_frozen_backbone_with_exit_2(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "edgelll.cli.main", "learn", "-s", "ncm",
                          "--whiten", "auto", "--out", str(tmp_path / "r"), "-q"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--freeze-backbone-after 1" in lines[0], out.stderr
    assert not (tmp_path / "r").exists()

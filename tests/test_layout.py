"""Colour images in either layout: channels-last arrays are detected (or named with ``layout``),
stored channels first, and train exactly as the same images given channels first."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgelll.config import resolve
from edgelll.data import from_arrays, load_npz
from edgelll.errors import ConfigError, EdgelllWarning
from edgelll.layout import detect
from edgelll.learner import learn


def _colour_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 6, 6) uint8: class k is a blob in colour channel k (k < 3) or in all three (k = 3),
    at a random place, over noise; the class is the colour, never the position."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.integers(0, 40, (n, 3, 6, 6)).astype(np.uint8)
    for i, k in enumerate(y):
        r, c = rng.integers(0, 4, 2)
        channels = [0, 1, 2] if k == 3 else [k]
        x[i, channels, r:r + 3, c:c + 3] = 220
    return x, y


@pytest.mark.parametrize("shape, want, ambiguous", [
    ((5, 32, 32, 3), "nhwc", False), ((5, 3, 32, 32), "nchw", False),
    ((5, 28, 28, 1), "nhwc", False), ((5, 4, 9, 9), "nchw", False),
    ((5, 3, 8, 3), "nchw", True), ((5, 9, 9, 9), "nchw", False),
])
def test_detect(shape, want, ambiguous):
    assert detect(shape) == (want, ambiguous)


def test_channels_last_is_stored_channels_first_and_ambiguity_is_said():
    x, y = _colour_images(16, 0)
    nhwc = x.transpose(0, 2, 3, 1).copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clear shape warns about nothing
        auto = from_arrays(nhwc, y, nhwc, y)
    assert auto.input_shape == (3, 6, 6) and np.array_equal(auto.x_train, x)
    assert np.array_equal(from_arrays(nhwc, y, nhwc, y, layout="nhwc").x_test, x)
    assert from_arrays(nhwc, y, nhwc, y, layout="nchw").input_shape == (6, 6, 3)  # as told
    odd = np.zeros((8, 3, 5, 3), dtype=np.uint8)
    with pytest.warns(EdgelllWarning, match=r"could be channels first or last.*--layout nhwc"):
        assert from_arrays(odd, y[:8], odd, y[:8]).input_shape == (3, 5, 3)
    with pytest.raises(ConfigError, match="layout"):
        resolve({"layout": "hwc"})


def test_both_layouts_train_identically(tmp_path):
    x_tr, y_tr = _colour_images(160, 1)
    x_te, y_te = _colour_images(80, 2)
    cfg = resolve({"strategies": ["naive"], "tasks": 1, "steps": 60, "batch_size": 16,
                   "model_args": {"hidden": (16,)}, "lr": 3e-3})
    first = learn(cfg, data=(x_tr, y_tr, x_te, y_te))
    last = (x_tr.transpose(0, 2, 3, 1), y_tr, x_te.transpose(0, 2, 3, 1), y_te)
    assert learn(cfg, data=last).acc_matrix == first.acc_matrix  # bit for bit
    np.savez(tmp_path / "c.npz", x_train=last[0], y_train=y_tr, x_test=last[2], y_test=y_te)
    told = resolve(cfg.to_dict(), {"layout": "nhwc", "data": str(tmp_path / "c.npz")})
    assert learn(told).acc_matrix == first.acc_matrix
    assert first.acc_matrix[0][0] > 0.6  # colour learned: chance is 0.25
    assert np.array_equal(load_npz(tmp_path / "c.npz").x_train, x_tr)

"""omniglot=PATH (edgelll/omniglot.py) on a tiny hand-made npz of the real file's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgelll.data import DATASETS, load_dataset
from edgelll.errors import DataError
from edgelll.fscil import FscilSpec
from edgelll.omniglot import TEST_DRAWINGS
from edgelll.streams import make_stream

N_BG, N_EV, DRAWINGS = 4, 3, 8


def _write(path, n_bg=N_BG, n_ev=N_EV, drawings=DRAWINGS):
    """Characters' drawings interleaved (not grouped); pixel 0 holds the split (0 background,
    1 evaluation), pixel 1 the character, pixel 2 the drawing's rank within its character."""
    out = {}
    rng = np.random.default_rng(0)
    for split, n, code in (("background", n_bg, 0), ("evaluation", n_ev, 1)):
        y = np.tile(np.arange(n), drawings).astype(np.int16)
        x = rng.integers(0, 256, (len(y), 6, 6), dtype=np.uint8)
        x[:, 0, 0], x[:, 0, 1], x[:, 0, 2] = code, y, np.arange(len(y)) // n
        out[f"x_{split}"], out[f"y_{split}"] = x, y
        out[f"alphabet_{split}"] = np.zeros(len(y), dtype=np.int16)
    np.savez(path, **out)
    return out


def test_layout_labels_test_split_and_base_pool(tmp_path):
    _write(tmp_path / "omni.npz")
    d = load_dataset(f"omniglot={tmp_path / 'omni.npz'}")
    assert d.name == "omniglot" and d.input_shape == (1, 6, 6)
    assert d.base_pool == tuple(range(N_BG)) and d.class_names is None
    for x, y, ranks in ((d.x_train, d.y_train, range(DRAWINGS - TEST_DRAWINGS)),
                        (d.x_test, d.y_test, range(DRAWINGS - TEST_DRAWINGS, DRAWINGS))):
        # evaluation character c is class N_BG + c; each keeps its drawings in file order
        assert (y == x[:, 0, 0, 1] + N_BG * x[:, 0, 0, 0]).all()
        for c in range(N_BG + N_EV):
            assert sorted(x[y == c, 0, 0, 2].tolist()) == list(ranks)


def test_fscil_base_from_background_sessions_from_evaluation(tmp_path):
    _write(tmp_path / "omni.npz")
    d = load_dataset(f"omniglot={tmp_path / 'omni.npz'}")
    s = make_stream(d, "fscil", "class", 1, class_order="random", fscil=FscilSpec(2, 1, 2, 3))
    base, *new = [e.classes for e in s.experiences]
    assert set(base) <= set(range(N_BG)) and len(base) == 2
    assert sorted(c for g in new for c in g) == list(range(N_BG, N_BG + N_EV))


def test_class_names_from_the_json_beside_the_file(tmp_path):
    _write(tmp_path / "omni.npz")
    names = {"background": {"characters": [f"A/character{i:02d}" for i in range(N_BG)]},
             "evaluation": {"characters": [f"B/character{i:02d}" for i in range(N_EV)]}}
    (tmp_path / "omni_classes.json").write_text(json.dumps(names))
    d = load_dataset(f"omniglot={tmp_path / 'omni.npz'}")
    assert d.class_names[N_BG + 1] == "B/character01"
    s = make_stream(d, "fscil", "class", 1, fscil=FscilSpec(None, 1, 2, 2))
    assert s.label_map()["names"][str(N_BG)] == "B/character00"
    names["evaluation"]["characters"].pop()
    (tmp_path / "omni_classes.json").write_text(json.dumps(names))
    with pytest.raises(DataError, match="2 evaluation characters"):
        load_dataset(f"omniglot={tmp_path / 'omni.npz'}")


def test_bad_omniglot_files_are_data_errors(tmp_path):
    _write(tmp_path / "few.npz", drawings=TEST_DRAWINGS)  # nothing left to train on
    with pytest.raises(DataError, match="at least 6"):
        load_dataset(f"omniglot={tmp_path / 'few.npz'}")
    np.savez(tmp_path / "mnist_like.npz", x_train=np.zeros((2, 3, 3)), y_train=[0, 1],
             x_test=np.zeros((2, 3, 3)), y_test=[0, 1])
    with pytest.raises(DataError, match="lacks array.*x_background"):
        load_dataset(f"omniglot={tmp_path / 'mnist_like.npz'}")
    assert "omniglot" in DATASETS


def test_list_datasets_shows_omniglot():
    from test_cli import invoke
    result = invoke("list", "datasets")
    assert result.exit_code == 0 and "omniglot=PATH" in result.stdout.replace("\n", " ").replace("│", "")

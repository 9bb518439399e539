"""The fscil stream (edgelll/fscil.py): promised classes, shots and test sets, its bad inputs, and
the learner's per-session metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgelll
from edgelll.data import from_arrays, load_dataset
from edgelll.errors import ConfigError, DataError
from edgelll.fscil import FscilSpec
from edgelll.streams import make_stream

from test_cli import assert_one_line_error, learn


def _data(n_classes: int = 8, per_train: int = 12, per_test: int = 3, seed: int = 0):
    """uint8 images (N, 1, 5, 5); pixel 0 and 1 hold the sample id (train ids 0.., test ids
    1000..), pixel 2 the class, so every sample can be traced."""
    rng = np.random.default_rng(seed)

    def split(per: int, id0: int):
        y = np.repeat(np.arange(n_classes), per)
        rng.shuffle(y)
        x = rng.integers(0, 256, (len(y), 1, 5, 5), dtype=np.uint8)
        ids = id0 + np.arange(len(y))
        x[:, 0, 0, 0], x[:, 0, 0, 1], x[:, 0, 0, 2] = ids // 256, ids % 256, y
        return x, y

    return from_arrays(*split(per_train, 0), *split(per_test, 1000), name="toy")


def _ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()).tolist()


def test_sessions_have_the_promised_classes_shots_and_test_sets():
    data = _data()
    s = make_stream(data, "fscil", "class", 99, fscil=FscilSpec(2, 2, 3, 3))
    assert [e.classes for e in s.experiences] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert [e.head_size for e in s.experiences] == [2, 4, 6, 8]
    assert s.class_order == list(range(8))
    for e in s.experiences:
        b = e.train_data()
        cls = b.x[:, 0, 0, 2].tolist()
        ids = _ids(b.x)
        assert len(set(ids)) == len(ids)  # drawn without replacement
        assert b.y.tolist() == cls  # natural order: global label = class
        per_class = np.bincount(cls, minlength=8)[list(e.classes)]
        # base: all its training data; later sessions: exactly `shots` per new class
        assert per_class.tolist() == ([12, 12] if e.index == 0 else [3, 3])
        # its test set is every test sample of its own classes, nothing else
        want = np.flatnonzero(np.isin(data.y_test, e.classes)) + 1000
        assert sorted(_ids(e.x_test)) == want.tolist()
        assert e.y_test.tolist() == e.x_test[:, 0, 0, 2].tolist()
    # the test set of session i (experiences 0..i) covers every class seen so far
    for i in range(len(s)):
        seen = {int(c) for e in s.experiences[: i + 1] for c in e.y_test.tolist()}
        assert seen == set(range(2 * (i + 1)))


def test_shots_are_a_seeded_choice():
    data = _data(per_train=30)
    picks = {}
    for seed in (0, 0, 1):
        s = make_stream(data, "fscil", "class", 1, seed=seed, fscil=FscilSpec(2, 3, 2, 2))
        picks.setdefault(seed, []).append([sorted(_ids(e.train_data().x)) for e in s.experiences[1:]])
    assert picks[0][0] == picks[0][1]
    assert picks[0][0] != picks[1][0]


def test_class_order_and_default_base_and_label_map():
    data = _data()
    s = make_stream(data, "fscil", "class", 1, class_order="7,6,5,4,3,2,1,0",
                    fscil=FscilSpec(None, 1, 2, 3))
    assert [e.classes for e in s.experiences] == [(7, 6, 5, 4, 3), (2,), (1,), (0,)]
    b = s.experiences[1].train_data()
    assert set(b.y.tolist()) == {5}  # global unit of class 2: sixth in session order
    lm = s.label_map()
    assert lm["units"] == [7, 6, 5, 4, 3, 2, 1, 0] and lm["tasks"][0] == [7, 6, 5, 4, 3]


def test_base_pool_keeps_new_classes_out_of_the_base():
    import dataclasses
    data = dataclasses.replace(_data(), base_pool=(1, 3, 5, 7))
    s = make_stream(data, "fscil", "class", 1, fscil=FscilSpec(None, 2, 2, 2))
    assert [e.classes for e in s.experiences] == [(1, 3, 5, 7), (0, 2), (4, 6)]
    s = make_stream(data, "fscil", "class", 1, fscil=FscilSpec(2, 1, 2, 4))
    assert [e.classes for e in s.experiences] == [(1, 3), (0,), (2,), (4,), (6,)]
    with pytest.raises(ConfigError, match="more than the 4 base-pool"):
        make_stream(data, "fscil", "class", 1, fscil=FscilSpec(5, 1, 2, 1))


@pytest.mark.parametrize("spec, match", [
    (FscilSpec(2, 4, 2, 2), "need 8 new classes, but only 6 are left after the 2 base"),
    (FscilSpec(None, 3, 2, 3), "leaving none for the base"),
    (FscilSpec(2, 1, 13, 1), "12 training samples, fewer than the 13"),
])
def test_impossible_sessions_are_refused(spec, match):
    with pytest.raises((ConfigError, DataError), match=match):
        make_stream(_data(), "fscil", "class", 1, fscil=spec)


def test_a_session_whose_test_set_lacks_a_seen_class_is_refused():
    d = _data()
    keep = d.y_test != 5
    d = from_arrays(d.x_train, d.y_train, d.x_test[keep], d.y_test[keep])
    with pytest.raises(DataError, match="session 2's test set lacks class 5"):
        make_stream(d, "fscil", "class", 1, fscil=FscilSpec(2, 2, 3, 3))


def test_config_ranges_are_checked_in_one_place():
    for bad in ({"shots": 0}, {"ways": 0}, {"sessions": 0}, {"base_classes": 0},
                {"stream": "fscil", "scenario": "task"}):
        with pytest.raises(ConfigError):
            edgelll.resolve(bad)
    cfg = edgelll.resolve({"stream": "fscil", "base_classes": "3", "ways": 2, "shots": 4})
    assert (cfg.base_classes, cfg.ways, cfg.shots, cfg.sessions) == (3, 2, 4, 5)
    assert edgelll.resolve(cfg.to_dict()) == cfg


@pytest.fixture(scope="module")
def ncm_run(tmp_path_factory):
    digits = load_dataset("digits")
    cfg = edgelll.resolve({"stream": "fscil", "base_classes": 5, "ways": 1, "shots": 5,
                           "sessions": 5, "strategies": ["ncm"], "freeze_backbone_after": 1,
                           "epochs": 3, "model": {"hidden": [32]}})
    return edgelll.learn(cfg, data=digits, run_dir=tmp_path_factory.mktemp("fscil") / "run",
                         plot="none"), digits


def test_learner_session_metrics_are_the_accuracy_on_all_seen_classes(ncm_run):
    result, digits = ncm_run
    f = result.metrics["fscil"]
    assert len(result.acc_matrix) == 6 and [len(e["classes"]) for e in result.experiences] == [5] + [1] * 5
    assert [e["samples"] for e in result.experiences[1:]] == [5] * 5
    # the last session's figure is the final model's accuracy on the whole digits test set
    with torch.no_grad():
        pred = result.model.predict(torch.from_numpy(digits.x_test)).numpy()
    assert f["sessions"]["all"][-1] == pytest.approx(float((pred == digits.y_test).mean()))
    base = digits.y_test < 5
    assert f["sessions"]["base"][-1] == pytest.approx(float((pred == digits.y_test)[base].mean()))
    assert f["sessions"]["new"][-1] == pytest.approx(float((pred == digits.y_test)[~base].mean()))
    assert f["drop"] == pytest.approx(f["first"] - f["last"])
    assert f["sessions"]["new"][0] is None


def test_a_fscil_run_resumes_exactly(tmp_path):
    from _resume import assert_resume_is_exact
    cfg = edgelll.resolve({"stream": "fscil", "base_classes": 6, "ways": 2, "shots": 3,
                           "sessions": 2, "strategies": ["naive"], "epochs": 2,
                           "model": {"hidden": [16]}, "checkpoints": True})
    full, _ = assert_resume_is_exact(cfg, tmp_path, n=2)
    assert "fscil" in full.metrics


def test_cli_bad_fscil_input_is_one_line_exit_2(tmp_path):
    for args, needle in ((["--shots", "0"], "shots must be at least 1"),
                         (["--base-classes", "8", "--ways", "2"], "need 10 new classes, but only 2 are left"),
                         (["--scenario", "domain"], "use --scenario class")):
        assert_one_line_error(learn("--stream", "fscil", "--out", tmp_path / "r", *args), needle)
        assert not (tmp_path / "r").exists()
    d = _data()
    keep = d.y_test != 7
    np.savez(tmp_path / "gap.npz", x_train=d.x_train, y_train=d.y_train, x_test=d.x_test[keep],
             y_test=d.y_test[keep])
    assert_one_line_error(learn("--data", tmp_path / "gap.npz", "--stream", "fscil",
                                "--base-classes", "4", "--sessions", "4", "--out", tmp_path / "g"),
                          "test set lacks class 7")


# ---------------------------------------------------------------------------------------------
# the session metrics (edgelll/metrics.py), against a hand-computed example


def test_session_metrics_on_a_hand_computed_matrix():
    from edgelll.metrics import fscil_summary, session_accuracies, session_table
    R = [[0.9, 0.0, 0.0], [0.8, 0.5, 0.0], [0.7, 0.6, 0.2]]
    n = [100, 10, 10]  # test samples of the base session and of each new session
    per = session_accuracies(R, n)
    # after session 1: (80 + 5) correct of 110; after session 2: (70 + 6 + 2) of 120
    assert per["all"] == pytest.approx([0.9, 85 / 110, 78 / 120])
    assert per["base"] == pytest.approx([0.9, 0.8, 0.7])
    assert per["new"][0] is None and per["new"][1:] == pytest.approx([0.5, 8 / 20])
    table = session_table(per["all"])
    assert table == pytest.approx({"first": 0.9, "last": 0.65, "drop": 0.25,
                                   "average": (0.9 + 85 / 110 + 0.65) / 3})
    # during a run only the finished rows are known
    assert session_accuracies(R[:2], n)["all"] == pytest.approx([0.9, 85 / 110])
    assert fscil_summary(R, n)["test_counts"] == n
    with pytest.raises(ValueError):
        session_accuracies(R, [100, 0, 10])

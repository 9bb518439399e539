"""Metrics checked against hand-computed values, and the accuracy plot written to disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgelll.metrics import (
    accuracy_curve,
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summarize,
)
from edgelll.plots import save_accuracy_plot

R = [[0.9, 0.1, 0.05], [0.6, 0.95, 0.2], [0.5, 0.7, 0.97]]
B = [0.1, 0.12, 0.08]

# Accuracy on exp 0 rises from 0.6 to 0.8 while training exp 1, then drops to 0.5.
R_LATE_PEAK = [[0.6, 0.1, 0.1], [0.8, 0.9, 0.1], [0.5, 0.85, 0.95]]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_average_accuracy_full() -> None:
    # (0.5 + 0.7 + 0.97) / 3 = 2.17 / 3
    assert average_accuracy(R) == pytest.approx(0.7233333333)


def test_accuracy_curve() -> None:
    # row 0: 0.9; row 1: (0.6 + 0.95) / 2 = 0.775; row 2: 2.17 / 3
    assert accuracy_curve(R) == pytest.approx([0.9, 0.775, 0.7233333333])


def test_backward_transfer() -> None:
    # ((0.5 - 0.9) + (0.7 - 0.95)) / 2 = (-0.4 - 0.25) / 2
    assert backward_transfer(R) == pytest.approx(-0.325)


def test_forward_transfer() -> None:
    # ((R[0][1] - b[1]) + (R[1][2] - b[2])) / 2 = ((0.1 - 0.12) + (0.2 - 0.08)) / 2 = 0.10 / 2
    assert forward_transfer(R, B) == pytest.approx(0.05)


def test_forgetting() -> None:
    # exp 0: max(0.9, 0.6) - 0.5 = 0.4; exp 1: max(0.1, 0.95) - 0.7 = 0.25; mean 0.325
    assert forgetting(R) == pytest.approx(0.325)


def test_forgetting_uses_best_not_diagonal() -> None:
    # exp 0: max(0.6, 0.8) - 0.5 = 0.3; exp 1: max(0.1, 0.9) - 0.85 = 0.05; mean 0.175.
    # Measured from the diagonal instead it would be (0.1 + 0.05) / 2 = 0.075 = -BWT.
    assert forgetting(R_LATE_PEAK) == pytest.approx(0.175)
    # ((0.5 - 0.6) + (0.85 - 0.9)) / 2
    assert backward_transfer(R_LATE_PEAK) == pytest.approx(-0.075)


def test_one_row_has_no_transfer_or_forgetting() -> None:
    one = [R[0]]
    assert average_accuracy(one) == pytest.approx(0.9)
    assert backward_transfer(one) == 0.0
    assert forward_transfer(one, B) == 0.0
    assert forgetting(one) == 0.0
    assert accuracy_curve(one) == pytest.approx([0.9])


def test_partial_matrix() -> None:
    partial = R[:2]
    # (0.6 + 0.95) / 2
    assert average_accuracy(partial) == pytest.approx(0.775)
    # 0.6 - 0.9
    assert backward_transfer(partial) == pytest.approx(-0.3)
    # R[0][1] - b[1] = 0.1 - 0.12
    assert forward_transfer(partial, B) == pytest.approx(-0.02)
    # max(0.9) - 0.6
    assert forgetting(partial) == pytest.approx(0.3)
    assert accuracy_curve(partial) == pytest.approx([0.9, 0.775])


def test_perfect_retention() -> None:
    retained = np.tril(np.ones((4, 4)))  # every seen experience stays at 100 %
    assert backward_transfer(retained) == 0.0
    assert forgetting(retained) == 0.0
    assert average_accuracy(retained) == pytest.approx(1.0)


def test_summarize_is_json_ready() -> None:
    summary = summarize(R, B)
    assert set(summary) == {"acc", "bwt", "fwt", "forgetting", "acc_curve"}
    assert summary["acc"] == pytest.approx(0.7233333333)
    assert summary["bwt"] == pytest.approx(-0.325)
    assert summary["fwt"] == pytest.approx(0.05)
    assert summary["forgetting"] == pytest.approx(0.325)
    assert all(type(v) is float for v in summary["acc_curve"])
    assert all(type(summary[k]) is float for k in ("acc", "bwt", "fwt", "forgetting"))
    assert json.loads(json.dumps(summary)) == summary


@pytest.mark.parametrize(
    "bad",
    [
        [0.5, 0.6],  # 1-D
        [[0.5, 0.6], [0.7, 0.8], [0.9, 1.0]],  # more rows than columns
        [[0.5, 1.2], [0.7, 0.8]],  # above 1
        [[0.5, -0.1], [0.7, 0.8]],  # below 0
        [[0.5, math.nan], [0.7, 0.8]],  # not finite
        [[0.5, math.inf], [0.7, 0.8]],
        [[0.5, 0.6], [0.7]],  # ragged
        [["a", "b"], ["c", "d"]],
        np.zeros((0, 3)),  # no finished row
        np.zeros((1, 2, 2)),
    ],
)
def test_invalid_matrix_raises(bad: object) -> None:
    with pytest.raises(ValueError):
        average_accuracy(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_b", [[0.1, 0.2], [0.1, 0.2, 1.5], [[0.1, 0.2, 0.3]]])
def test_invalid_baseline_raises(bad_b: object) -> None:
    with pytest.raises(ValueError):
        forward_transfer(R, bad_b)  # type: ignore[arg-type]


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000  # two annotated panels, not an empty canvas


def test_save_accuracy_plot_writes_png_atomically(tmp_path: Path) -> None:
    out = tmp_path / "acc.png"
    save_accuracy_plot(R, out, title="toy run", labels=["a", "b", "c"])
    _assert_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["acc.png"]
    # a second write replaces the file in place, still with nothing left over
    save_accuracy_plot(R_LATE_PEAK, str(out))
    _assert_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["acc.png"]


def test_save_accuracy_plot_partial_matrix(tmp_path: Path) -> None:
    out = tmp_path / "partial.png"
    save_accuracy_plot(R[:2], out)
    _assert_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["partial.png"]


def test_save_accuracy_plot_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_accuracy_plot(R, tmp_path / "x.png", labels=["only one"])
    with pytest.raises(ValueError):
        save_accuracy_plot([[2.0]], tmp_path / "y.png")
    assert list(tmp_path.iterdir()) == []


def test_save_accuracy_plot_removes_temp_when_render_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgelll.plots as plots

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("render failed")

    monkeypatch.setattr(plots, "_render", boom)
    with pytest.raises(RuntimeError):
        save_accuracy_plot(R, tmp_path / "z.png")
    assert list(tmp_path.iterdir()) == []

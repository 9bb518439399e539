"""The accuracy figure and CSV as a person reads them: experiences from 1, percent everywhere,
untrained cells blank, final ACC and classes in the title (edgelll/plots.py)."""

from __future__ import annotations

import math

import numpy as np

from edgelll.plot_job import render
from edgelll.plots import acc_csv_text, experience_labels, figure, heat_cells, run_title

R = [[0.9, 0.1, 0.2], [0.8, 0.7, 0.3], [0.6, 0.5, 0.4]]


def test_heat_cells_are_percent_and_blank_where_not_trained():
    cells = heat_cells(R[:2])
    for i in range(3):
        for j in range(3):
            if i < 2 and j <= i:
                assert math.isclose(cells[i, j], 100 * R[i][j])
            else:  # later experiences (even a nonzero FWT score) and rows not reached
                assert math.isnan(cells[i, j]), (i, j)


def test_figure_is_in_percent_and_numbered_from_one():
    labels = experience_labels([[0, 1], [2, 3], [4, 5]])
    assert labels == ["exp 1: 0,1", "exp 2: 2,3", "exp 3: 4,5"]
    fig = figure(np.array(R), "t", labels)
    heat, curves, bar = fig.axes
    assert bar.get_ylim() == (0.0, 100.0) and bar.get_ylabel() == "accuracy (%)"
    assert heat.images[0].get_clim() == (0.0, 100.0)
    assert len(heat.texts) == 6  # the lower triangle only
    shown = sorted(float(t.get_text()) for t in heat.texts)
    assert shown == sorted(round(100 * R[i][j], 1) for i in range(3) for j in range(i + 1))
    assert [t.get_text() for t in heat.get_yticklabels()] == labels
    assert curves.get_ylim() == (0.0, 105.0)
    first = curves.lines[0]
    assert np.allclose(first.get_ydata(), [90.0, 80.0, 60.0])
    average = curves.lines[-1]
    assert np.allclose(average.get_ydata(), [90.0, 75.0, 50.0])


def test_run_title_gives_acc_and_classes():
    classes = [[0, 1], [2, 3], [4, 5]]
    title = run_title(["replay", "ewc"], "digits", "split", "class", R, classes)
    assert "replay+ewc on digits" in title
    assert "6 classes in 3 experiences" in title and "final ACC 50.0%" in title
    assert "ACC 75.0% after 2 of 3" in run_title(["naive"], "d", "split", "class", R[:2], classes)


def test_csv_numbers_experiences_from_one():
    lines = acc_csv_text(R[:2], 3).splitlines()
    assert lines[0] == "after_experience,exp1,exp2,exp3"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    assert [float(v) for v in lines[2].split(",")[1:]] == R[1]


def test_a_runs_plot_is_drawn_from_its_metrics_alone(tmp_path):
    metrics = {"acc_matrix": R, "experiences": [{"classes": [c, c + 1]} for c in (0, 2, 4)]}
    render(metrics, tmp_path / "accuracy.png", "replay on toy")
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["accuracy.png"]

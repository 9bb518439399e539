"""The gradient-free heads as strategies: ``-s hebbian`` / ``competitive`` / ``neural-gas`` / ``slda`` with
``--freeze-backbone-after 1`` learn only in the head once the backbone is frozen, checkpoints hold
the head, a head larger than the budget is refused before training, and ``edgelll export
--split`` gives a head that ``edgelll.runtime.Model`` predicts with as torch does, then learns a
new class from 5 shots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import edgelll
from edgelll.data import load_dataset
from edgelll.errors import BudgetError, ConfigError
from edgelll.export import ExportOptions, export_run
from edgelll.learner import Learner
from edgelll.runtime import Model

KINDS = {"hebbian": {}, "competitive": {"per_class": 2}, "neural-gas": {"per_class": 3},
         "slda": {}}


def _cfg(kind, **kw):
    return edgelll.resolve({"strategies": [kind], "epochs": 1, "tasks": 5,
                            "model_args": {"hidden": (32,)}, "freeze_backbone_after": 1,
                            "device": "cpu", kind: KINDS[kind], **kw})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module", params=list(KINDS))
def run(request, digits, tmp_path_factory):
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    data = (digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    edgelll.learn(_cfg(kind), data=data, run_dir=root / "run", plot="none")
    entry = export_run(root / "run", ExportOptions(split=True))
    early = export_run(root / "run", ExportOptions(split=True, checkpoint="exp002",
                                                    out=root / "early" / "m-extractor.onnx"))
    return kind, root / "run", root / "run" / "export" / entry["file"], root / "early" / early["file"]


def test_split_export_predicts_as_torch(run, digits):
    kind, run_dir, path, _ = run
    model = Model.load(path)
    assert model.head.kind == kind
    expect = edgelll.load_model(run_dir).predict(digits.x_test).numpy()
    got = model.predict(digits.x_test)
    assert (got == expect).mean() >= 0.995 and (got == digits.y_test).mean() > 0.6


def test_the_exported_head_learns_a_new_class_from_five_shots(run, digits):
    _, _, _, early = run
    model = Model.load(early)
    assert 8 not in model.classes.tolist()
    shots = np.flatnonzero(digits.y_train == 8)[:5]
    model.learn_class(digits.x_train[shots], 8)
    chance = 1 / len(model.classes)
    # far above chance, on features of a backbone trained on digits 0 and 1 only
    assert (model.predict(digits.x_test[digits.y_test == 8]) == 8).mean() >= 2.5 * chance
    model.learn(digits.x_train[shots[:2]], np.array([8, 8]))  # and keeps learning it


def test_only_the_head_learns_once_the_backbone_is_frozen(digits):
    learner = Learner(_cfg("competitive", tasks=2), data=digits)
    learner.run()
    model = learner.model
    assert not any(p.requires_grad for p in model.parameters())  # no backward pass at all
    head = model.head.find("competitive")
    buffers = {n.rsplit(".", 1)[-1] for n, _ in model.named_buffers()}
    assert head.n_rows == 10 and {"protos", "wins", "counts"} <= buffers  # in checkpoints
    assert torch.isfinite(head.protos).all() and head.wins.sum() == len(digits.x_train)
    figures = learner.metrics()["strategies"]["competitive"]["head"]  # metrics.json
    assert figures["wins"] == len(digits.x_train) and figures["units"] == 20
    assert 10 <= figures["units_that_won"] <= 20


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_head_is_planned_and_one_over_the_budget_is_refused_before_training(kind, digits):
    planned = Learner(_cfg(kind), data=digits).planned
    units = {"hebbian": 1, "competitive": 2, "neural-gas": 3, "slda": 1}[kind]
    m = 10 * units  # float32 rows of 32 features, per-unit wins/ages, per-class counts
    head = {"hebbian": m * 128 + 40, "competitive": m * (128 + 4) + 40,
            "neural-gas": m * (128 + 4 + 1) + m * m * 4,  # + alive, edge ages
            "slda": m * 128 + 40 + 32 * 32 * 4}[kind]  # + the (D, D) scatter
    assert planned["buffers"] - 8 == head  # the head's state, beside the input normalisation
    total = sum(planned.values())
    Learner(_cfg(kind, memory=total), data=digits)  # fits exactly
    if kind in ("hebbian", "slda"):  # no setting sizes them: one byte less is refused
        with pytest.raises(BudgetError) as err:
            Learner(_cfg(kind, memory=total - 1), data=digits)
        assert "\n" not in str(err.value)
        return
    bigger = {**KINDS[kind], "per_class": units + 1}  # one more unit per class: over the budget
    with pytest.raises(BudgetError, match="buffers") as err:
        Learner(_cfg(kind, memory=total, **{kind: bigger}), data=digits)
    assert "\n" not in str(err.value)


def test_a_second_deciding_head_and_too_few_nodes_are_refused(digits):
    with pytest.raises(ConfigError, match="each decide predictions"):
        Learner(edgelll.resolve({"strategies": ["hebbian", "neural-gas"], "tasks": 2}), data=digits)
    with pytest.raises(ConfigError, match="max_nodes 4 leaves no node"):
        Learner(_cfg("neural-gas", **{"neural-gas": {"max_nodes": 4}}), data=digits)


@pytest.mark.parametrize("kind", list(KINDS))
def test_resume_from_checkpoints_is_exact(kind, tmp_path):
    from _resume import assert_resume_is_exact

    full, _ = assert_resume_is_exact(_cfg(kind, tasks=3), tmp_path)
    assert full.memory["components"]["buffers"] == full.memory["planned"]["buffers"]


def test_the_node_cap_is_what_the_budget_holds(digits, tmp_path):
    plenty = Learner(_cfg("neural-gas"), data=digits)
    total = sum(plenty.planned.values())
    gas = next(s for s in plenty.strategies if s.name == "neural-gas")
    assert gas.max_nodes == 0  # no budget, no cap
    budget = total + 100 * (32 * 4 + 5) + 4 * (130 ** 2 - 30 ** 2) + 50  # room for 100 nodes
    learner = Learner(_cfg("neural-gas", memory=budget), data=digits)
    gas = next(s for s in learner.strategies if s.name == "neural-gas")
    assert gas.max_nodes == 30 + 99  # 30 slots of training, then whole classes of 3
    learner.run()
    assert learner.model.head.find("neural-gas").params["max_nodes"] == 129


def test_competitive_clusters_are_reported_per_experience_as_recomputed(digits, tmp_path):
    from edgelll.metrics import cluster_agreement
    from edgelll.runtime.competitive import cluster
    from edgelll.strategies.replay import embed

    data = (digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    cfg = _cfg("competitive", competitive={"per_class": 2, "clusters": 6})
    result = edgelll.learn(cfg, data=data, run_dir=tmp_path / "run", plot="none")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    rows = metrics["strategies"]["competitive"]["clusters"]
    assert [r["experience"] for r in rows] == [0, 1, 2, 3, 4] and rows[0]["k"] == 6
    assert rows[-1]["samples"] == len(digits.y_test)
    # the last entry is the final model's features, clustered again without labels
    feats = embed(result.model, torch.as_tensor(digits.x_test))
    _, assign = cluster(feats, 6, batch=1024)
    want = cluster_agreement(assign.numpy(), digits.y_test)
    assert {k: rows[-1][k] for k in want} == pytest.approx(want)
    assert rows[-1]["nmi"] > 0.3  # frozen features of 10 digits in 6 groups: far from random
    with pytest.raises(ConfigError, match="competitive.clusters"):
        edgelll.resolve({"strategies": ["competitive"], "competitive": {"clusters": -1}})

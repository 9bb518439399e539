"""-s net2net (edgelll/strategies/net2net.py): a small network grows when an experience is not
learned, within its caps; refused growths are logged and the run goes on; the grown network is
checkpointed, resumes bit for bit and exports; the memory plan covers the largest network the cap
allows; importances and optimizer state follow the growth; bad settings are refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import edgelll
from edgelll.data import load_dataset
from edgelll.errors import ConfigError
from edgelll.export import ExportOptions, export_run
from edgelll.learner import Learner
from edgelll.models import rebuild


def _cfg(**kw):
    n2n = {"target": 0.99, "check_every": 10, **kw.pop("net2net", {})}
    base = {"strategies": ["net2net", "replay"], "epochs": 3, "tasks": 5,
            "model_args": {"hidden": (16, 16)}, "device": "cpu", "net2net": n2n}
    cfg = {**base, **kw}
    if "replay" in cfg["strategies"]:
        cfg["replay"] = {"size": 100}
    return edgelll.resolve(cfg)


@pytest.fixture(scope="module")
def data():
    d = load_dataset("digits")
    return d.x_train, d.y_train, d.x_test, d.y_test


def _report(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def grown(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("n2n") / "run"
    result = edgelll.learn(_cfg(), data=data, run_dir=root, plot="none")
    return result, root


def test_the_network_grows_when_an_experience_is_not_learned(grown):
    result, root = grown
    report = _report(root)["strategies"]["net2net"]
    growths = [e for e in report["events"] if e["event"] == "growth"]
    assert growths and report["growths"] == len(growths)
    params = report["params_after_experience"]
    assert len(params) == 5 and params == sorted(params) and params[-1] > params[0]
    for e in growths:  # each growth says when, where, from what to what and why
        assert e["train_acc"] < 0.99 and e["to"] > e["from"] and "below net2net.target" in e["why"]
        assert e["params_after"] > e["params_before"] and e["step"] >= 10
        assert 0 < e["ms"] < 10_000  # how long training paused for it
    # the model's spec records the grown shape, so a rebuild holds the trained weights
    model = edgelll.load_model(root)
    assert sum(p.numel() for p in model.parameters()) == params[-1]
    assert model.args["hidden"] != [16, 16] and model.args["hidden"] != (16, 16)


def _at_end(cfg, data) -> int:
    """The starting network's parameters with its head grown for the whole stream."""
    learner = Learner(cfg, data)
    for exp in learner.stream.experiences:
        learner.model.adapt(exp)
    return sum(p.numel() for p in learner.model.parameters())


def test_caps_refuse_growth_and_the_run_goes_on(data, tmp_path):
    n0 = _at_end(_cfg(), data)  # as it starts, with the head it will need
    result = edgelll.learn(_cfg(net2net={"max_params": n0 + 10}), data=data,
                           run_dir=tmp_path / "run", plot="none")
    report = _report(tmp_path / "run")["strategies"]["net2net"]
    refused = [e for e in report["events"] if e["event"] == "refused"]
    assert report["growths"] == 0 and refused
    assert all("exceed net2net.max_params" in e["why"] for e in refused)
    assert len(result.acc_matrix) == 5  # every experience still trained
    capped = edgelll.learn(_cfg(net2net={"per_experience": 0}), data=data,
                           run_dir=tmp_path / "b", plot="none")
    report = _report(tmp_path / "b")["strategies"]["net2net"]
    assert report["growths"] == 0 and len(capped.acc_matrix) == 5
    assert all("per_experience" in e["why"] for e in report["events"])


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_the_cap_holds_at_the_end_and_a_widening_stops_at_it(scenario, data, tmp_path):
    """The head grows with the stream's classes (class scenario) or task heads (task scenario)
    after a growth: the cap counts those rows in advance, and a widening that would pass it adds
    the units that still fit."""
    n0 = _at_end(_cfg(scenario=scenario), data)
    cap = n0 + 1500  # room for a few units, not for a whole widening by half
    edgelll.learn(_cfg(scenario=scenario, net2net={"max_params": cap}), data=data,
                  run_dir=tmp_path / "run", plot="none")
    report = _report(tmp_path / "run")["strategies"]["net2net"]
    growths = [e for e in report["events"] if e["event"] == "growth"]
    assert report["params_after_experience"][-1] <= cap
    assert all(e["params_at_end"] <= cap for e in growths)
    clipped = [e for e in growths if "as many as net2net.max_params" in e["why"]]
    assert clipped and all(e["to"] - e["from"] < max(1, round(e["from"] * 0.5)) for e in clipped)
    assert report["params_after_experience"][-1] > cap - 100  # the cap used, within a unit


def test_a_grown_run_resumes_bit_identically_and_exports(grown, data, tmp_path):
    result, root = grown
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    for name in ("exp003.pt", "exp004.pt"):
        (copy / "checkpoints" / name).unlink()
    (copy / "metrics.json").unlink()
    again = edgelll.learn(_cfg(), data=data, run_dir=copy, resume=True, plot="none")
    assert again.acc_matrix == result.acc_matrix
    a, b = result.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    def learned(root):  # the events without their wall times
        report = _report(root)["strategies"]["net2net"]
        return {**report, "events": [{k: v for k, v in e.items() if k != "ms"}
                                     for e in report["events"]]}

    assert learned(copy) == learned(root)
    entry = export_run(copy, ExportOptions())
    parity = entry["parity"]
    assert parity["max_abs_diff"] <= parity["tolerance"] and parity["label_agreement"] == 1.0


def test_the_memory_plan_covers_the_largest_network_the_cap_allows(data, tmp_path):
    result = edgelll.learn(_cfg(memory="2MiB", net2net={"max_params": 20000}), data=data,
                           run_dir=tmp_path / "run", plot="none")
    memory = _report(tmp_path / "run")["memory_bytes"]
    assert _report(tmp_path / "run")["strategies"]["net2net"]["growths"] > 0
    assert memory["total"] <= memory["planned"]["total"] <= 2 * 1024 * 1024
    assert memory["planned"]["strategy:net2net"] > 0 and result.acc_matrix
    with pytest.raises(ConfigError, match="net2net.max_params"):  # a cap is needed there
        edgelll.learn(_cfg(memory="2MiB"), data=data, plot="none")


SMALL = {"ewc": {"fisher_samples": 20}, "online-ewc": {"fisher_samples": 20},
         "mas": {"samples": 20}, "si": {}}


@pytest.mark.parametrize("other", list(SMALL))
def test_importances_follow_the_growth(other, data):
    result = edgelll.learn(_cfg(strategies=["net2net", other], tasks=3, **{other: SMALL[other]}),
                           data=data, plot="none")
    strat = next(s for s in result.strategies if s.name == other)
    params = dict(result.model.named_parameters())
    held = strat.big_omega if other == "si" else strat.omega
    assert held and all(held[k].shape == params[k].shape for k in held)  # the grown shapes
    assert any(s.name == "net2net" and s.events for s in result.strategies)


@pytest.mark.parametrize("settings, match", [
    ({"net2net": {"max_params": 10}}, "below the starting network"),
    ({"strategies": ["net2net", "gem"]}, "drop one"),
    ({"strategies": ["net2net", "ncm"]}, "drop one"),
    ({"model": "mlp-small", "model_args": {}, "net2net": {"max_params": 10}}, "below"),
    ({"net2net": {"target": 0}}, "target"),
    ({"net2net": {"widen": 0}}, "widen"),
])
def test_bad_settings_are_refused(settings, match, data):
    with pytest.raises(ConfigError, match=match) as err:
        edgelll.learn(_cfg(**settings), data=data, plot="none")
    assert "\n" not in str(err.value)


def test_a_run_resumes_after_an_experience_that_deepened(data, tmp_path):
    """A deepening adds a layer inside the backbone; Adam's state in the checkpoint is stored by
    position, so the optimizer must hold the new layer at its place in the model's order (it
    was appended at the end, and resuming from that experience was refused: 'exp_avg has shape
    (4, 150), the parameter (150, 150)')."""
    cfg = _cfg(tasks=2, net2net={"min_gain": 1.0})  # every widening is followed by a deepening
    root = tmp_path / "run"
    result = edgelll.learn(cfg, data=data, run_dir=root, plot="none")
    events = _report(root)["strategies"]["net2net"]["events"]
    assert [e["op"] for e in events if e["experience"] == 0 and e["event"] == "growth"] == [
        "widen", "deepen"]
    ckpt = torch.load(root / "checkpoints" / "exp000.pt", weights_only=True)
    model = rebuild(ckpt["spec"])
    model.load_state_dict(ckpt["model"])
    shapes = [tuple(p.shape) for n, p in model.named_parameters() if n not in ckpt["frozen"]]
    state = ckpt["optimizer"]["state"]  # by position in the optimizer's parameter list
    assert [tuple(state[i]["exp_avg"].shape) for i in range(len(shapes))] == shapes
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "checkpoints" / "exp001.pt").unlink()
    (copy / "metrics.json").unlink()
    again = edgelll.learn(cfg, data=data, run_dir=copy, resume=True, plot="none")
    assert again.acc_matrix == result.acc_matrix
    a, b = result.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the FLOPs counted after the resume are the grown network's, not the config's small one's
    assert ([e["flops"] for e in _report(copy)["experiences"]]
            == [e["flops"] for e in _report(root)["experiences"]])


def _latent_cfg(layer: int):
    cfg = {"strategies": ["net2net", "latent"], "epochs": 3, "tasks": 5, "device": "cpu",
           "model_args": {"hidden": (16, 16)}, "net2net": {"target": 0.99, "check_every": 10},
           "latent": {"layer": layer, "size": 100}}
    return edgelll.resolve(cfg)


def test_with_latent_replay_only_the_layers_above_its_codes_grow(data, tmp_path):
    """latent.layer=3 stores the output of the first hidden layer (Flatten, Linear, ReLU): the
    second hidden layer and the head may grow, the first never, so the network below the codes
    is bitwise the one that made them (frozen from experience 1 on) and the codes keep their
    width."""
    root = tmp_path / "run"
    result = edgelll.learn(_latent_cfg(3), data=data, run_dir=root, plot="none")
    report = _report(root)["strategies"]["net2net"]
    growths = [e for e in report["events"] if e["event"] == "growth"]
    # hidden layer 0 is backbone[1], below the codes; 1 is backbone[3], and deepenings add more
    assert growths and all(e["layer"] >= 1 for e in growths)
    assert {e["op"] for e in growths} == {"widen", "deepen"}
    first = torch.load(root / "checkpoints" / "exp000.pt", weights_only=True)["model"]
    now = result.model.state_dict()
    for name in ("backbone.1.weight", "backbone.1.bias"):
        assert torch.equal(first[name], now[name])
    assert result.model.backbone[1].out_features == 16
    latent = next(s for s in result.strategies if s.name == "latent")
    assert latent.shape == (16,) and latent.buffer.size > 0
    assert result.model.args["hidden"][1] > 16  # it did grow, above the codes
    assert result.model.args["hidden"][0] == 16


def test_with_latent_codes_above_every_hidden_layer_growth_is_refused(data, tmp_path):
    root = tmp_path / "run"
    result = edgelll.learn(_latent_cfg(5), data=data, run_dir=root, plot="none")
    report = _report(root)["strategies"]["net2net"]
    assert report["growths"] == 0 and report["events"]
    assert all("latent replay" in e["why"] for e in report["events"])
    assert len(result.acc_matrix) == 5 and list(result.model.args["hidden"]) == [16, 16]

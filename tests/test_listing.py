"""Defaults that a newcomer can see: ``learn --help``, ``list strategies -v``,
``list strategy NAME``, and the resolved automatic values a run records."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from typer.testing import CliRunner

from edgelll.cli.main import app
from edgelll.config import LearnConfig
from edgelll.describe import resolved_values, strategy_parameters
from edgelll.strategies import STRATEGIES, create_strategy, strategy_params

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def invoke(*args):
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", "FORCE_COLOR": None})
    result = runner.invoke(app, [str(a) for a in args])
    return result, ANSI.sub("", result.stdout)


def test_every_strategy_parameter_has_help():
    for name, cls in STRATEGIES.items():
        for f in dataclasses.fields(cls.Params):
            assert len(f.metadata.get("help", "")) >= 8, f"{name}.{f.name} has no help"
            if f.default is None:  # None stands for a choice: the help must say which
                assert "None:" in f.metadata["help"], f"{name}.{f.name}"


def test_learn_help_shows_every_default_from_learnconfig():
    result, out = invoke("learn", "--help")
    assert result.exit_code == 0
    flat = " ".join(out.replace("│", " ").split())
    d = LearnConfig()
    for option, value in (("--epochs", d.epochs), ("--batch-size", d.batch_size), ("--lr", d.lr),
                          ("--tasks", d.tasks), ("--seed", d.seed), ("--data", d.data),
                          ("--model", d.model), ("--optimizer", d.optimizer)):
        assert re.search(re.escape(option) + r" .*?\[default: \(?" + re.escape(str(value)), flat), option
    assert "[default: (-s replay)]" in flat and "[default: (no cap)]" in flat


def test_learn_help_follows_learnconfig(monkeypatch):
    import edgelll.cli.learn as learn_cli
    assert learn_cli._shown("epochs") == str(LearnConfig().epochs)
    monkeypatch.setattr(learn_cli, "_DEFAULTS", dataclasses.replace(LearnConfig(), epochs=7))
    assert learn_cli._shown("epochs") == "7"  # read from LearnConfig(), not a copied literal


def test_list_strategy_shows_parameters_defaults_and_meaning():
    result, out = invoke("list", "strategy", "replay")
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in out.splitlines() if line.count("│") >= 4}
    assert rows["size"] == ["None", "exemplars; None: fill the memory budget (200 without one)"]
    assert rows["policy"][0] == "reservoir"


def test_list_strategies_verbose_lists_every_parameter():
    result, out = invoke("list", "strategies", "-v")
    assert result.exit_code == 0
    for name, cls in STRATEGIES.items():
        assert name in out
        for row in strategy_parameters(name):
            assert row["help"] in out, (name, row["name"])
    assert strategy_parameters("ewc")[0] == {"name": "lam", "default": "5000.0",
                                             "help": "penalty strength lambda"}


@pytest.mark.parametrize("args, fragment", [(["list", "strategy", "replya"], "did you mean 'replay'"),
                                            (["list", "strategy"], "takes a name"),
                                            (["list", "models", "x"], "takes no name")])
def test_list_bad_names_are_one_line(args, fragment):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and fragment in result.stderr


def test_resolved_values_follow_the_strategies():
    replay = create_strategy("replay", strategy_params("replay", {}))
    sized = create_strategy("replay", strategy_params("replay", {"size": 50, "batch_size": 8}))
    gem = create_strategy("gem", strategy_params("gem", {}))
    cfg = dataclasses.replace(LearnConfig(), batch_size=16)
    assert resolved_values([replay], cfg) == {"replay.size": 200, "replay.batch_size": 16}
    assert resolved_values([sized], cfg) == {"replay.size": 50, "replay.batch_size": 8}
    replay.capacity, gem.fitted = 1234, 77  # as fit_budget leaves them under --memory
    assert resolved_values([replay, gem], cfg) == {"replay.size": 1234, "replay.batch_size": 16,
                                                   "gem.per_experience": 77}


def test_run_records_resolved_sizes(tmp_path):
    import edgelll
    out = tmp_path / "run"
    cfg = edgelll.resolve({"strategies": ["replay"], "memory": "4MiB", "steps": 2, "tasks": 2,
                           "device": "cpu"})
    result = edgelll.learn(cfg, run_dir=out)
    resolved = json.loads((out / "metrics.json").read_text())["resolved"]
    assert resolved["replay.size"] == result.strategies[0].capacity != 200
    assert resolved["replay.batch_size"] == cfg.batch_size
    assert json.loads((out / "config.json").read_text())["strategy_args"]["replay"]["size"] is None

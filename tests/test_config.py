"""Tests for edgelll.config: sizes, --set parsing, layered resolution, checks, config files."""

from __future__ import annotations

import json
import sys
import types

import pytest

from edgelll.config import (LearnConfig, format_bytes, load_config_file, parse_sets, parse_size,
                            resolve)
from edgelll.errors import ConfigError

REPLAY_DEFAULTS = {"size": None, "batch_size": None, "policy": "reservoir"}

# ---------------------------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize("text, want", [
    ("4MiB", 4194304), ("512KiB", 524288), ("1.5MB", 1500000), ("65536", 65536),
    ("2kb", 2000), (" 1 GiB ", 2**30), ("3M", 3 * 2**20), ("100B", 100), (4096, 4096), (None, None),
])
def test_parse_size(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("text", ["abc", "4XB", "0", "0.5", "", "-4MiB", "MiB", 0, -5, True])
def test_parse_size_errors(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(4194304) == "4.00 MiB"


# ---------------------------------------------------------------------------------------------
# --set


def test_parse_sets_forms():
    assert parse_sets([]) == {}
    assert parse_sets(["replay.size=2000", "lr=0.01", "ewc.lam=5", "replay.policy=balanced"]) == {
        "replay": {"size": "2000", "policy": "balanced"}, "lr": "0.01", "ewc": {"lam": "5"}}
    assert parse_sets(["class_order=2,0,1"]) == {"class_order": "2,0,1"}
    assert parse_sets(["data=mnist=/tmp/m.npz"]) == {"data": "mnist=/tmp/m.npz"}  # first = splits
    assert parse_sets(["epochs="]) == {"epochs": ""}


@pytest.mark.parametrize("item", ["epochs", "=3", " =3", ""])
def test_parse_sets_needs_key_and_equals(item):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets([item])


@pytest.mark.parametrize("sets", [["model=convnet", "model.hidden=64"],
                                  ["model.hidden=64", "model=convnet"]])
def test_set_model_and_model_param_together(sets):
    cfg = resolve(overrides=parse_sets(sets))
    assert cfg.model == "convnet" and cfg.model_args == {"hidden": 64}


# ---------------------------------------------------------------------------------------------
# resolve


def test_defaults():
    cfg = resolve()
    assert cfg == resolve({}, overrides={})
    assert cfg.epochs == 10 and cfg.strategies == ("replay",) and cfg.memory is None
    assert cfg.strategy_args == {"replay": REPLAY_DEFAULTS}


def test_layers_later_wins():
    file_layer = {"epochs": 3, "lr": 0.1, "seed": 7}
    cli_layer = {"epochs": 4}
    cfg = resolve(file_layer, cli_layer)
    assert (cfg.epochs, cfg.lr, cfg.seed, cfg.batch_size) == (4, 0.1, 7, 32)
    cfg = resolve(file_layer, cli_layer, overrides=parse_sets(["epochs=9"]))
    assert (cfg.epochs, cfg.lr) == (9, 0.1)
    # Strategy and model tables merge per parameter across layers.
    cfg = resolve({"replay": {"size": 10, "policy": "balanced"}, "model": {"hidden": [8, 8]}},
                  {"replay": {"size": 20}}, overrides=parse_sets(["model.hidden=5"]))
    assert cfg.strategy_args["replay"] == {"size": 20, "batch_size": None, "policy": "balanced"}
    assert cfg.model_args == {"hidden": (5,)}


def test_set_strategy_param_fills_other_defaults():
    cfg = resolve(overrides=parse_sets(["replay.size=2000"]))
    assert cfg.strategy_args["replay"] == {**REPLAY_DEFAULTS, "size": 2000}
    assert isinstance(cfg.strategy_args["replay"]["size"], int)


def test_set_model_hidden_tuple():
    cfg = resolve(overrides=parse_sets(["model.hidden=64,32"]))
    assert cfg.model_args["hidden"] == (64, 32)


def test_typed_values_from_set():
    cfg = resolve(overrides=parse_sets([
        "lr=0.01", "amp=true", "memory=4MiB", "steps=12", "compute_flops=1e9", "threads=auto",
        "strategies=naive,ewc", "ewc.lam=100", "class_order=2,0,1,3,4,5,6,7,8,9"]))
    assert cfg.lr == 0.01 and cfg.amp is True and cfg.memory == 4194304 and cfg.steps == 12
    assert cfg.compute_flops == 1e9 and cfg.threads is None
    assert cfg.strategies == ("naive", "ewc")
    assert cfg.strategy_args["ewc"]["lam"] == 100.0 and cfg.strategy_args["naive"] == {}
    assert cfg.class_order == "2,0,1,3,4,5,6,7,8,9"


@pytest.mark.parametrize("text", ["none", "None", "NULL", "auto"])
def test_optional_numbers_accept_none_spellings(text):
    cfg = resolve({"steps": 5, "threads": 2}, overrides=parse_sets([f"steps={text}", f"threads={text}"]))
    assert cfg.steps is None and cfg.threads is None


def test_round_trip_through_json():
    cfg = resolve(overrides={
        "memory": "1.5MB", "strategies": "replay,ewc", "replay": {"size": 300, "policy": "balanced"},
        "ewc": {"lam": 250}, "model": "convnet", "model_args": {"channels": "8,16", "hidden": 64},
        "scenario": "task", "tasks": 4, "class_order": "random", "steps": 50, "compute_flops": 2.5e8,
        "optimizer": "sgd", "momentum": 0.9, "threads": 2, "seed": 3, "checkpoints": False})
    assert cfg.memory == 1500000 and cfg.model_args == {"channels": (8, 16), "hidden": 64}
    raw = json.loads(json.dumps(cfg.to_dict()))
    assert raw["strategies"] == ["replay", "ewc"]
    back = LearnConfig.from_dict(raw)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_unknown_setting_suggests_close_names():
    with pytest.raises(ConfigError, match="'epochs'"):
        resolve(overrides=parse_sets(["epoch=3"]))
    with pytest.raises(ConfigError, match="'size'"):
        resolve(overrides=parse_sets(["replay.sise=3"]))
    with pytest.raises(ConfigError, match="'hidden'"):
        resolve(overrides=parse_sets(["model.hiden=3"]))
    with pytest.raises(ConfigError, match="'replay'"):
        resolve({"strategies": "replya"})


def test_settings_for_a_strategy_not_in_the_run():
    with pytest.raises(ConfigError, match="--strategy ewc"):
        resolve({"strategies": ["naive"]}, overrides=parse_sets(["ewc.lam=5"]))


@pytest.mark.parametrize("sets", [
    ["tasks=0"], ["lr=-1"], ["lr=nan"], ["optimizer=adamw"], ["strategies=ewc", "ewc.lam=-1"],
    ["replay.size=0"], ["replay.policy=x"], ["epochs=abc"], ["epochs=2.5"], ["batch_size=0"],
    ["momentum=1"], ["amp=maybe"], ["scenario=classes"], ["stream=split2"], ["device=tpu"],
    ["steps=0"], ["compute_flops=-3"], ["memory=0"], ["memory=lots"], ["strategies=naive,naive"],
    ["strategies=independent", "scenario=domain"], ["strategies="], ["model=resnet"],
    ["model.hidden=a,b"],
])
def test_bad_values_are_config_errors(sets):
    with pytest.raises(ConfigError):
        resolve(overrides=parse_sets(sets))


def test_bad_values_in_file_layers_are_config_errors():
    for layer in ({"memory": 0}, {"memory": -1}, {"epochs": "3x"}, {"amp": 1}, {"tasks": True}):
        with pytest.raises(ConfigError):
            resolve(layer)


@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_non_integer_for_optional_int_strategy_param(value):
    with pytest.raises(ConfigError):
        resolve(overrides=parse_sets([f"replay.size={value}"]))


# ---------------------------------------------------------------------------------------------
# config files


def test_load_toml_and_json(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 3\nmemory = "4MiB"\nstrategies = ["replay", "ewc"]\n\n'
                    '[replay]\nsize = 100\n\n[model]\nhidden = [32, 16]\n')
    raw = load_config_file(toml)
    assert raw == {"epochs": 3, "memory": "4MiB", "strategies": ["replay", "ewc"],
                   "replay": {"size": 100}, "model": {"hidden": [32, 16]}}
    cfg = resolve(raw, {"epochs": 4})
    assert cfg.epochs == 4 and cfg.memory == 4194304 and cfg.model_args == {"hidden": (32, 16)}
    assert cfg.strategy_args["replay"]["size"] == 100

    js = tmp_path / "config.json"
    js.write_text(json.dumps(cfg.to_dict()))
    assert LearnConfig.from_dict(load_config_file(js)) == cfg
    assert resolve(load_config_file(js)) == cfg


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config_file(tmp_path)  # a folder
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n[replay\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{epochs: 3")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(bad_json)
    not_table = tmp_path / "list.json"
    not_table.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="table"):
        load_config_file(not_table)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00epochs")
    with pytest.raises(ConfigError):
        load_config_file(binary)


def test_toml_falls_back_to_tomli(tmp_path, monkeypatch):
    # Python 3.10 has no tomllib; pyproject installs the tomli backport there instead.
    import tomllib as real

    calls = []
    shim = types.ModuleType("tomli")

    def loads(text):
        calls.append(text)
        return real.loads(text)

    shim.loads = loads
    shim.TOMLDecodeError = real.TOMLDecodeError
    monkeypatch.setitem(sys.modules, "tomllib", None)  # makes `import tomllib` fail
    monkeypatch.setitem(sys.modules, "tomli", shim)
    f = tmp_path / "run.toml"
    f.write_text("epochs = 2\n")
    assert load_config_file(f) == {"epochs": 2}
    assert calls == ["epochs = 2\n"]

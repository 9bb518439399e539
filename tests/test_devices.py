"""Device profiles: the schema refuses every bad field with one line, the shipped profiles carry
their defining figures, ``list devices`` shows them, and ``learn --device-profile`` applies the
memory budget and threads (explicit options win, threads capped at this host's cores)."""

from __future__ import annotations

import json
import os
import re

import pytest
from typer.testing import CliRunner

from edgelll.cli.main import app
from edgelll.devices_catalog import (SCHEMA, device_profile, learn_settings, list_devices,
                                     parse_profile)
from edgelll.errors import ConfigError

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
GOOD = {"name": "board", "description": "a test board", "cpu": "4x A72", "arch": "aarch64",
        "cores": 4, "threads": 2, "ram": "1GiB", "learner_memory": "64MiB",
        "latency_target_ms": 5, "accelerator": "none", "onnx_providers": ["CPUExecutionProvider"]}


def _toml(raw: dict) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in raw.items())


def test_a_good_profile_parses_with_units():
    p = parse_profile(dict(GOOD), "board.toml")
    assert (p.ram, p.learner_memory) == (2**30, 64 * 2**20)
    assert (p.cores, p.threads, p.latency_target_ms) == (4, 2, 5.0)
    assert p.onnx_providers == ("CPUExecutionProvider",) and p.runs_onnxruntime


@pytest.mark.parametrize("key, value, words", [
    ("name", "", "name must be a non-empty string"),
    ("description", 3, "description must be"),
    ("cpu", ["x"], "cpu must be"),
    ("arch", None, "arch must be"),
    ("cores", 0, "cores must be a whole number"),
    ("cores", 2.5, "cores must be a whole number"),
    ("threads", True, "threads must be a whole number"),
    ("threads", 8, "threads (8) must be at most cores (4)"),
    ("ram", "lots", "ram: cannot read the size 'lots'"),
    ("ram", False, "ram must be a size"),
    ("learner_memory", "2GiB", "learner_memory (2GiB) must be at most ram (1GiB)"),
    ("learner_memory", "0.1B", "less than one byte"),
    ("latency_target_ms", 0, "latency_target_ms must be a positive number"),
    ("latency_target_ms", "5ms", "latency_target_ms must be a positive number"),
    ("accelerator", 1, "accelerator must be"),
    ("onnx_providers", "CPUExecutionProvider", "onnx_providers must be a list"),
    ("onnx_providers", [1], "onnx_providers must be a list"),
    ("source", "", "source must be"),
])
def test_every_bad_field_is_one_line(key, value, words):
    raw = {**GOOD, key: value}
    if value is None:
        del raw[key]
        words = f"lacks {key}"
    with pytest.raises(ConfigError) as err:
        parse_profile(raw, "board.toml")
    assert words in str(err.value) and "board.toml" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_and_missing_keys_are_refused():
    with pytest.raises(ConfigError, match="unknown key 'gpu'"):
        parse_profile({**GOOD, "gpu": "x"}, "b.toml")
    with pytest.raises(ConfigError, match="lacks cores, threads"):
        parse_profile({k: v for k, v in GOOD.items() if k not in ("cores", "threads")}, "b.toml")


def test_shipped_profiles_carry_their_defining_figures():
    d = list_devices()
    assert set(d) == {"x86-laptop", "raspberry-pi-4", "jetson-orin-nano", "raspberry-pi-zero-2w",
                      "stm32h7"}
    assert (d["raspberry-pi-4"].cores, d["raspberry-pi-4"].ram) == (4, 4 * 2**30)
    assert "A72" in d["raspberry-pi-4"].cpu
    assert (d["raspberry-pi-zero-2w"].ram, d["raspberry-pi-zero-2w"].arch) == (512 * 2**20, "aarch64")
    assert "A53" in d["raspberry-pi-zero-2w"].cpu
    assert d["jetson-orin-nano"].onnx_providers[0] == "CUDAExecutionProvider"
    assert d["jetson-orin-nano"].cores == 6 and d["jetson-orin-nano"].accelerator == "cuda"
    assert d["stm32h7"].ram == 2**20 and not d["stm32h7"].runs_onnxruntime
    for p in d.values():
        assert set(SCHEMA) - {"source"} <= set(vars(p))
        assert p.learner_memory < p.ram and p.threads <= p.cores


def test_profile_by_path_and_bad_files(tmp_path):
    good = tmp_path / "board.toml"
    good.write_text(_toml(GOOD))
    assert device_profile(str(good)).name == "board"
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        device_profile(str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        device_profile(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="unknown device profile 'raspberry-pi'; did you mean"):
        device_profile("raspberry-pi")


def test_learn_settings_cap_threads_with_a_warning():
    pi = device_profile("raspberry-pi-4")
    layer, warning = learn_settings(pi, host_cores=2)
    assert layer == {"memory": 64 * 2**20, "threads": 2, "device_profile": "raspberry-pi-4"}
    assert "asks for 4 threads" in warning and "uses 2" in warning
    assert learn_settings(pi, host_cores=8) == ({**layer, "threads": 4}, None)


def test_list_devices_shows_the_new_fields():
    result = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, ["list", "devices"])
    out = ANSI.sub("", result.stdout)
    assert result.exit_code == 0
    row = next(line for line in out.splitlines() if line.startswith("raspberry-pi-4 "))
    assert row.split()[1:] == ["4x", "A72", "1.5GHz", "4/4", "4", "GiB", "64", "MiB", "10", "ms",
                               "CPU"]
    assert re.search(r"stm32h7 .* none", out)


def _learn(tmp_path, *args):
    return CliRunner().invoke(app, ["learn", "--epochs", "1", "--set", "model.hidden=16", "-q",
                                    "--plot", "none", "--tasks", "2", *args])


def test_learn_applies_the_profile_and_options_win(tmp_path):
    cores = os.cpu_count() or 1
    r = _learn(tmp_path, "--device-profile", "raspberry-pi-4", "--out", str(tmp_path / "a"))
    assert r.exit_code == 0, r.stderr
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (cfg["memory"], cfg["device_profile"]) == (64 * 2**20, "raspberry-pi-4")
    assert cfg["threads"] == min(4, cores)
    assert ("warning: device profile raspberry-pi-4 asks for 4 threads" in r.stderr) == (cores < 4)
    r = _learn(tmp_path, "--device-profile", "raspberry-pi-4", "--memory", "2MiB", "--threads",
               "1", "--out", str(tmp_path / "b"))
    assert r.exit_code == 0, r.stderr
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (cfg["memory"], cfg["threads"]) == (2 * 2**20, 1) and "warning" not in r.stderr
    r = CliRunner().invoke(app, ["learn", "--resume", str(tmp_path / "a"), "--threads", "1", "-q",
                                 "--plot", "none"])
    assert r.exit_code == 0, r.stderr  # the recorded profile resumes
    r = CliRunner().invoke(app, ["learn", "--resume", str(tmp_path / "a"), "--device-profile",
                                 "stm32h7", "-q"])
    assert r.exit_code == 2 and "--resume continues a run with its own config.json" in r.stderr


def test_learn_with_the_microcontroller_profile_sets_its_budget(tmp_path):
    r = _learn(tmp_path, "--device-profile", "stm32h7", "--set", "replay.size=50",
               "--out", str(tmp_path / "m"))
    assert r.exit_code == 0, r.stderr
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["memory"], cfg["threads"]) == (256 * 2**10, 1)
    r = _learn(tmp_path, "--device-profile", "no-such-board", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and not (tmp_path / "x").exists()
    assert "unknown device profile 'no-such-board'" in r.stderr


def test_resolve_applies_a_profile_for_python_callers_too():
    """edgelll.resolve, not only the CLI, applies a device_profile: its budget and threads under
    every other layer, an explicit memory or threads winning; a run's own config.json (both set)
    resumes without reading the profile again."""
    import warnings

    import edgelll

    cores = os.cpu_count() or 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = edgelll.resolve({"device_profile": "raspberry-pi-4"})
    assert (cfg.memory, cfg.threads, cfg.device_profile) == (64 * 2**20, min(4, cores),
                                                            "raspberry-pi-4")
    assert any("asks for 4 threads" in str(w.message) for w in caught) == (cores < 4)
    cfg = edgelll.resolve({"device_profile": "raspberry-pi-4", "memory": "2MiB"}, {"threads": 1})
    assert (cfg.memory, cfg.threads) == (2 * 2**20, 1)
    again = edgelll.resolve({**cfg.to_dict(), "device_profile": "no-such-board"})
    assert (again.memory, again.threads) == (2 * 2**20, 1)  # both set: the profile is not read
    assert edgelll.resolve({"device_profile": None}).memory is None
    with pytest.raises(ConfigError, match="unknown device profile 'no-such-board'"):
        edgelll.resolve({"device_profile": "no-such-board"})

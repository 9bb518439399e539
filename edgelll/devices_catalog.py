"""Device profiles: TOML files shipped in ``devices/`` (installed as ``edgelll.devices``)."""

from __future__ import annotations

import tomllib
from importlib import resources

from .config import parse_size
from .errors import ConfigError, unknown_name

REQUIRED = ("name", "description", "arch", "cores", "ram", "learner_memory", "accelerator")


def list_devices() -> dict[str, dict]:
    out = {}
    for entry in sorted(resources.files("edgelll.devices").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            profile = tomllib.loads(entry.read_text())
            missing = [k for k in REQUIRED if k not in profile]
            if missing:
                raise ConfigError(f"device profile {entry.name} lacks {', '.join(missing)}")
            out[profile["name"]] = profile
    return out


def device_profile(name: str) -> dict:
    devices = list_devices()
    if name not in devices:
        raise ConfigError(unknown_name("device profile", name, devices))
    profile = dict(devices[name])
    profile["ram_bytes"] = parse_size(profile["ram"])
    profile["learner_memory_bytes"] = parse_size(profile["learner_memory"])
    return profile

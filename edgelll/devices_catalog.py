"""Device profiles: TOML files shipped in ``devices/`` (installed as ``edgelll.devices``)."""

from __future__ import annotations

from importlib import resources

try:
    import tomllib
except ImportError:  # Python 3.10 (the project requires 3.11, but keep listing readable there)
    import tomli as tomllib

from .config import DEVICES, parse_size
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


def device_option_message(name: str) -> str:
    """The one line for ``--device NAME`` when NAME is not auto, cpu or cuda.

    A device profile (``edgelll list devices``) describes a deployment target; it is not where
    training runs, and nothing applies profiles yet (issue #5 will, through
    ``edgelll profile --target NAME``), so say that instead of "unknown device".
    """
    choices = " | ".join(DEVICES)
    try:
        profiles = list_devices()
    except (ConfigError, OSError):
        profiles = {}
    if name in profiles:
        return (f"{name!r} is a device profile (edgelll list devices), not a device to train on: "
                f"--device takes {choices}; profiles are not applied yet and will go to "
                f"`edgelll profile --target {name}`")
    return unknown_name("device", name, DEVICES) + (
        "; device profiles (edgelll list devices) are not --device values")

"""Device profiles: TOML files shipped in ``devices/`` (installed as ``edgelll.devices``), or a
user's own file, checked against one schema when read.

A profile describes a deployment target class by the figures that decide what runs there: its
cores (and the threads to use), its RAM and the share of it a learner may hold, a latency target
at batch 1, and the ONNX Runtime execution providers it offers. ``edgelll learn --device-profile``
takes the memory budget and threads from it; ``edgelll profile --device-profile`` takes the
threads and providers and checks the latency target. A profile with no providers (the
microcontroller class) only sets budgets: ONNX Runtime does not run there.

Imports no torch (``edgelll list devices`` and ``edgelll profile`` run on a device install).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10 (the project requires 3.11, but keep listing readable there)
    import tomli as tomllib

from .errors import ConfigError, unknown_name
from .values import format_bytes, parse_size

# key -> (type check, what it must be); every key is required except those in OPTIONAL.
_STR = (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string")
_COUNT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096,
          "a whole number from 1 to 4096")
_SIZE = (lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
         "a size like 64MiB or a number of bytes")
SCHEMA = {
    "name": _STR, "description": _STR, "cpu": _STR, "arch": _STR,
    "cores": _COUNT, "threads": _COUNT, "ram": _SIZE, "learner_memory": _SIZE,
    "latency_target_ms": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                          and math.isfinite(v) and v > 0, "a positive number of milliseconds"),
    "accelerator": _STR,
    "onnx_providers": (lambda v: isinstance(v, list) and all(isinstance(p, str) and p for p in v),
                       "a list of ONNX Runtime provider names (empty: ONNX Runtime does not run there)"),
    "source": _STR,
}
OPTIONAL = ("source",)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    cpu: str
    arch: str
    cores: int
    threads: int
    ram: int  # bytes
    learner_memory: int  # bytes
    latency_target_ms: float
    accelerator: str
    onnx_providers: tuple[str, ...]
    source: str | None = None
    path: str | None = None  # the file it was read from

    @property
    def runs_onnxruntime(self) -> bool:
        return bool(self.onnx_providers)

    def row(self) -> dict[str, str]:
        """The fields as ``edgelll list devices`` shows them."""
        return {"name": self.name, "cpu": self.cpu, "cores": f"{self.cores}/{self.threads}",
                "ram": _short_bytes(self.ram),
                "learn": _short_bytes(self.learner_memory),
                "target": f"{self.latency_target_ms:g} ms",
                "ort": ",".join(p.removesuffix("ExecutionProvider")
                                            for p in self.onnx_providers) or "none"}


def _short_bytes(n: int) -> str:
    """``format_bytes`` without trailing zeros: 4 GiB, 1.5 MiB."""
    number, unit = format_bytes(n).split()
    return f"{float(number):g} {unit}"


def parse_profile(raw: dict, where: str) -> DeviceProfile:
    """A :class:`DeviceProfile` from a TOML table, every field checked; ``where`` names the file
    in the one-line :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"device profile {where} must be a table of settings")
    for key in raw:
        if key not in SCHEMA:
            raise ConfigError(f"device profile {where}: {unknown_name('key', key, SCHEMA)}")
    missing = [k for k in SCHEMA if k not in raw and k not in OPTIONAL]
    if missing:
        raise ConfigError(f"device profile {where} lacks {', '.join(missing)}; see "
                          f"`edgelll list devices` and the files in devices/ for the keys")
    for key, value in raw.items():
        ok, what = SCHEMA[key]
        if not ok(value):
            raise ConfigError(f"device profile {where}: {key} must be {what}, got {value!r}")
    sizes = {}
    for key in ("ram", "learner_memory"):
        try:
            sizes[key] = parse_size(raw[key])
        except ConfigError as exc:
            raise ConfigError(f"device profile {where}: {key}: {exc}") from None
    if raw["threads"] > raw["cores"]:
        raise ConfigError(f"device profile {where}: threads ({raw['threads']}) must be at most "
                          f"cores ({raw['cores']})")
    if sizes["learner_memory"] > sizes["ram"]:
        raise ConfigError(f"device profile {where}: learner_memory ({raw['learner_memory']}) "
                          f"must be at most ram ({raw['ram']})")
    return DeviceProfile(
        name=raw["name"], description=raw["description"], cpu=raw["cpu"], arch=raw["arch"],
        cores=raw["cores"], threads=raw["threads"], ram=sizes["ram"],
        learner_memory=sizes["learner_memory"], latency_target_ms=float(raw["latency_target_ms"]),
        accelerator=raw["accelerator"], onnx_providers=tuple(raw["onnx_providers"]),
        source=raw.get("source"), path=where)


def _read(text: str, where: str) -> DeviceProfile:
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"device profile {where} is not valid TOML: {exc}".splitlines()[0]) from None
    return parse_profile(raw, where)


def list_devices() -> dict[str, DeviceProfile]:
    """The shipped profiles by name; each file is named after its profile."""
    out = {}
    for entry in sorted(resources.files("edgelll.devices").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            profile = _read(entry.read_text(), entry.name)
            if profile.name != entry.name.removesuffix(".toml"):
                raise ConfigError(f"device profile {entry.name} is named {profile.name!r}; a "
                                  f"shipped profile's file is named after it")
            out[profile.name] = profile
    return out


def load_profile_file(path: str | Path) -> DeviceProfile:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"device profile file {path} does not exist" if not path.exists()
                          else f"device profile {path} is not a file; pass a .toml file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read device profile {path}: {exc}".splitlines()[0]) from None
    return _read(text, str(path))


def device_profile(name: str | Path) -> DeviceProfile:
    """A shipped profile by name, or a user's TOML file by path (``.toml`` or a path with a
    separator); an unknown name or a malformed file is one :class:`ConfigError` line."""
    text = str(name)
    if text.endswith(".toml") or os.sep in text or "/" in text:
        return load_profile_file(text)
    devices = list_devices()
    if text not in devices:
        raise ConfigError(unknown_name("device profile", text, devices)
                          + " (or the path of your own .toml profile)")
    return devices[text]


def learn_settings(profile: DeviceProfile, host_cores: int | None = None) -> tuple[dict, str | None]:
    """What ``edgelll learn --device-profile`` applies: the memory budget, the threads (capped
    at this host's cores, since training runs here) and the profile's name, as a settings layer
    for :func:`edgelll.resolve`; and a warning line when the threads were capped, else None."""
    cores = host_cores or os.cpu_count() or 1
    threads, warning = profile.threads, None
    if threads > cores:
        threads = cores
        warning = (f"device profile {profile.name} asks for {profile.threads} threads; this "
                   f"machine has {cores} cores, so learning uses {cores}")
    return {"memory": profile.learner_memory, "threads": threads,
            "device_profile": profile.name}, warning


def device_option_message(name: str) -> str:
    """The one line for ``--device NAME`` when NAME is not auto, cpu or cuda.

    A device profile (``edgelll list devices``) describes a deployment target; it is not where
    training runs, so point to ``--device-profile`` instead of saying "unknown device".
    """
    from .config import DEVICES

    choices = " | ".join(DEVICES)
    try:
        profiles = list_devices()
    except (ConfigError, OSError):
        profiles = {}
    if name in profiles:
        return (f"{name!r} is a device profile (edgelll list devices), not a device to train on: "
                f"--device takes {choices}; use --device-profile {name} to apply its memory "
                f"budget and threads (and `edgelll profile --device-profile {name}` to time a model for it)")
    return unknown_name("device", name, DEVICES) + (
        "; device profiles (edgelll list devices) go to --device-profile, not --device")

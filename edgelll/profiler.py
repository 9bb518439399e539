"""``edgelll profile TARGET...``: what each exported model costs on a device (latency, memory, the
cost of learning there) beside what it forgets, and the Pareto front of the two.

For each target (:mod:`.profiler_targets`): ONNX Runtime latency p50/p90/p99 and throughput at each
batch size (:mod:`.profiler_timing`), torch eager side by side where torch and the run are
present (same threads, ``no_grad``), CUDA where present, the model's bytes, the peak memory of an
inference-only child process (:mod:`.profiler_child`), ``Model.learn`` and ``learn_class`` per
sample on the split export, and the run's ACC, BWT and forgetting from the export's metadata (for
int8, re-measured on the quantised graph). A device profile sets threads and providers and its
batch-1 latency target is checked. What could not be measured is named per target, never
silently left out. The front (:mod:`.pareto`) minimises p50 batch-1 latency and forgetting.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, EdgelllWarning
from .pareto import pareto_front
from .profiler_targets import Target, feeds, input_specs, resolve_target
from .profiler_timing import (Budget, interleaved, learning_cost, ort_benches, summarise,
                              torch_benches)

CHILD_TIMEOUT_S = 300


@dataclass(frozen=True)
class ProfileOptions:
    batches: tuple[int, ...] = (1, 8, 32)
    runs: int | None = 1000
    seconds: float | None = None
    threads: int | None = None  # default: the device profile's, else 1
    device_profile: str | None = None
    torch: bool = True  # torch eager beside ONNX Runtime, where torch is installed
    learn_batch: int = 32

    def budget(self) -> Budget:
        b = Budget(runs=None if self.seconds is not None else self.runs, seconds=self.seconds)
        b.check()
        return b


def have_torch() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def settings(opts: ProfileOptions) -> tuple[int, tuple[str, ...], object | None]:
    """Threads, providers and the device profile (or None) the measurements use."""
    from .devices_catalog import device_profile
    from .runtime.session import check_providers

    if not opts.batches or any(b < 1 for b in opts.batches):
        raise ConfigError(f"--batch takes sizes of at least 1, like 1,8,32; got {opts.batches}")
    profile = device_profile(opts.device_profile) if opts.device_profile else None
    if profile is not None and not profile.runs_onnxruntime:
        raise ConfigError(f"device profile {profile.name} only sets budgets: ONNX Runtime does "
                          f"not run on it ({profile.cpu}); use it with edgelll learn "
                          f"--device-profile {profile.name}, and profile on a board that runs "
                          f"ONNX Runtime")
    providers = tuple(check_providers(profile.onnx_providers if profile else ("CPUExecutionProvider",)))
    cores = os.cpu_count() or 1
    threads = opts.threads if opts.threads is not None else (profile.threads if profile else 1)
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if threads > cores:
        if opts.threads is not None:
            raise ConfigError(f"--threads {threads} is more than this machine's {cores} cores")
        warnings.warn(f"device profile {profile.name} asks for {threads} threads; this machine "
                      f"has {cores} cores, so profiling uses {cores}", EdgelllWarning, stacklevel=2)
        threads = cores
    return threads, providers, profile


def peak_memory(target: Target, shapes, dtypes, batch: int, runs: int, threads: int, providers) -> dict:
    """The peak RSS of a child process that only loads the runtime and runs inference."""
    spec = {"path": str(target.onnx), "providers": list(providers), "threads": threads,
            "batch": batch, "runs": runs, "shapes": {k: list(v) for k, v in shapes.items()},
            "dtypes": dtypes}
    proc = subprocess.run([sys.executable, "-m", "edgelll.profiler_child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"note": f"the inference child process failed: {last}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _torch_benches(i: int, target: Target, shapes, dtypes, opts) -> list:
    import torch

    from .artifact import load_model

    ckpt = (target.meta.get("source") or {}).get("checkpoint")
    path = target.run_dir / "checkpoints" / f"{ckpt}.pt" if ckpt else target.run_dir
    model = load_model(path if Path(path).exists() else target.run_dir)
    inputs = {}
    for b in opts.batches:
        f = feeds(shapes, dtypes, b)
        inputs[b] = (f["x"], f.get("task"))
    features = target.meta.get("graph") == "extractor"
    out = torch_benches((i, "torch-cpu"), model, inputs, "cpu", features)
    if torch.cuda.is_available():
        out += torch_benches((i, "torch-cuda"), model, inputs, "cuda", features)
    return out


def _learning(target: Target, opts, budget, threads, providers) -> dict:
    from .runtime.model import Model

    def load():
        return Model.load(target.split, providers=providers, threads=threads)

    model = load()
    shapes, dtypes = input_specs(model.session, model.meta)
    x = feeds(shapes, dtypes, opts.learn_batch)["x"]
    rows = np.arange(opts.learn_batch) % len(model.head.labels)  # every class of the head in turn
    y = model.head.labels[rows]
    t = np.maximum(model.head.tasks[rows], 0) if model.routes_by_task else None  # each row's task
    return learning_cost(load, x, y, budget, t)


@dataclass
class Prepared:
    """A target ready to time: its benches, input specs and the notes gathered so far."""

    target: Target
    shapes: dict
    dtypes: dict
    benches: list
    notes: list


def prepare(i: int, target: Target, opts: ProfileOptions, threads: int, providers,
            torch_ok: bool) -> Prepared:
    """Sessions (and the torch model) for target ``i``, one bench per backend and batch size."""
    import onnxruntime as ort

    from .runtime.session import make_session

    notes = list(target.notes)
    session = make_session(target.onnx, providers, threads)
    shapes, dtypes = input_specs(session, target.meta)
    batch_feeds = {b: feeds(shapes, dtypes, b) for b in opts.batches}
    main = f"ort-{providers[0].removesuffix('ExecutionProvider').lower()}"
    benches = ort_benches((i, main), session, batch_feeds)
    if "CUDAExecutionProvider" in ort.get_available_providers() and main != "ort-cuda":
        cuda = make_session(target.onnx, ("CUDAExecutionProvider", "CPUExecutionProvider"), threads)
        benches += ort_benches((i, "ort-cuda"), cuda, batch_feeds)
    if torch_ok and opts.torch and target.run_dir is not None and target.meta is not None:
        benches += _torch_benches(i, target, shapes, dtypes, opts)
        if str(target.meta.get("export_format", "")).startswith("onnx-int8"):
            notes.append("torch eager times the run's fp32 model (torch has no int8 graph of it)")
    elif opts.torch:
        notes.append("torch eager not measured: " + ("torch is not installed" if not torch_ok
                     else "no run directory holds this model's checkpoint"))
    return Prepared(target, shapes, dtypes, benches, notes)


def finish(i: int, p: Prepared, times: dict, opts: ProfileOptions, budget: Budget, threads: int,
           providers, progress=lambda what: None) -> dict:
    """Everything ``profile.json`` holds of target ``i``: the latencies from ``times``, then the
    peak memory and the learning cost, measured one target at a time."""
    target, notes = p.target, p.notes
    latency: dict = {}
    for b in p.benches:
        _, backend, batch = b.key
        latency.setdefault(backend, {})[batch] = summarise(times[b.key], batch)
    progress("peak memory (child process)")
    memory = peak_memory(target, p.shapes, p.dtypes, max(opts.batches),
                         min(budget.runs or 100, 100), threads, providers)
    if "note" in memory:
        notes.append(memory["note"])
    learning = None
    if target.split is not None:
        progress("learning cost")
        learning = _learning(target, opts, budget, threads, providers)
        if "note" in learning:
            notes.append(learning.pop("note"))
            learning = None
    metrics = None
    if target.meta is not None:
        metrics = {k: (target.meta.get("metrics") or {}).get(k) for k in ("acc", "bwt", "forgetting")}
    return {"label": target.label, "path": str(target.onnx), "given": str(target.given),
            "run_dir": str(target.run_dir) if target.run_dir else None,
            "split": str(target.split) if target.split else None,
            "export_format": (target.meta or {}).get("export_format"),
            "model_bytes": target.onnx.stat().st_size, "metrics": metrics, "latency": latency,
            "memory": memory, "learning": learning, "notes": notes}


def _timed(prepared: list[Prepared], budget: Budget, threads: int, torch_ok: bool, progress):
    """Every bench of every target, interleaved, with torch held at ``threads`` threads."""
    benches = [b for p in prepared for b in p.benches]
    torch = sys.modules.get("torch") if torch_ok else None
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    labels = [p.target.label for p in prepared]
    tick = None
    if progress is not None:
        def tick(k, n, key):
            progress(k, n, f"{labels[key[0]]}: {key[1]} batch {key[2]}")
    try:
        return interleaved(benches, budget, progress=tick)
    finally:
        if before is not None:
            torch.set_num_threads(before)


def main_latency(entry: dict) -> float | None:
    """The p50 at batch 1 of the target's ONNX Runtime session (the front's latency axis)."""
    for name, per_batch in entry["latency"].items():
        if name.startswith("ort-"):
            b1 = per_batch.get(1) or per_batch.get("1")
            return b1["p50_ms"] if b1 else None
    return None


def mark_front(entries: list[dict], profile) -> None:
    """Each entry's ``front`` flag, and its latency-target verdict when a profile is given."""
    idx = [i for i, e in enumerate(entries)
           if main_latency(e) is not None and (e["metrics"] or {}).get("forgetting") is not None]
    flags = pareto_front([(main_latency(entries[i]), entries[i]["metrics"]["forgetting"]) for i in idx])
    for e in entries:
        e["front"] = None
    for i, flag in zip(idx, flags):
        entries[i]["front"] = flag
    for e in entries:
        if profile is not None and main_latency(e) is not None:
            e["latency_target_ms"] = profile.latency_target_ms
            e["meets_target"] = main_latency(e) <= profile.latency_target_ms


def profile_targets(targets: list[str | Path], opts: ProfileOptions = ProfileOptions(),
                    progress=None, echo=lambda line: None) -> dict:
    """Measure every target; returns what ``profile.json`` holds (nothing is written here).
    ``progress(i, n, what)`` hears each step; ``echo(line)`` gets exports made on the fly."""
    if not targets:
        raise ConfigError("give at least one run directory or .onnx file to profile")
    opts.budget()
    threads, providers, profile = settings(opts)
    torch_ok = have_torch()
    resolved = [resolve_target(t, torch_ok, threads, providers, echo) for t in targets]
    budget = opts.budget()
    prepared = [prepare(i, t, opts, threads, providers, torch_ok) for i, t in enumerate(resolved)]
    times = _timed(prepared, budget, threads, torch_ok, progress)
    entries = []
    for i, p in enumerate(prepared):
        step = (lambda what, i=i, t=p.target: progress(i, len(prepared), f"{t.label}: {what}")) \
            if progress else (lambda what: None)
        entries.append(finish(i, p, times, opts, budget, threads, providers, step))
    mark_front(entries, profile)
    notes = []
    if not any(k.endswith("cuda") for e in entries for k in e["latency"]):
        notes.append("CUDA not measured: no CUDAExecutionProvider in this onnxruntime"
                     + (" and no CUDA device for torch" if torch_ok else ""))
    return {"notes": notes, "format": "edgelll-profile/1", "threads": threads, "providers": list(providers),
            "device_profile": None if profile is None else {
                "name": profile.name, "latency_target_ms": profile.latency_target_ms,
                "threads": profile.threads, "onnx_providers": list(profile.onnx_providers)},
            "budget": {"runs": opts.runs if opts.seconds is None else None, "seconds": opts.seconds,
                       "batches": list(opts.batches)},
            "torch_available": torch_ok, "host_cores": os.cpu_count(), "targets": entries}

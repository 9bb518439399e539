"""What ``edgelll profile`` writes: ``profile.json`` (everything), ``profile.csv`` (one row per
target, backend and batch size, the same figures), ``pareto.png``, and the terminal table.

The output folder is never a different earlier profile overwritten by accident: a folder holding
the profile of the same targets is replaced (a re-measurement); one holding another profile's is
refused unless ``force``, and the default folder is numbered instead. Each file is written
atomically, after every measurement is done.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from .errors import OutputError
from .pareto import plot_pareto
from .profiler import main_latency
from .runtime.format import atomic_write_bytes

CSV_COLUMNS = ("label", "path", "backend", "batch", "p50_ms", "p90_ms", "p99_ms", "throughput",
               "model_bytes", "peak_rss_bytes", "learn_us_per_sample", "learn_class_us_per_sample",
               "acc", "bwt", "forgetting", "front", "meets_target")


def csv_rows(report: dict) -> list[dict]:
    rows = []
    for e in report["targets"]:
        m = e["metrics"] or {}
        learning = e["learning"] or {}
        for backend, per_batch in e["latency"].items():
            for batch, s in per_batch.items():
                rows.append({"label": e["label"], "path": e["path"], "backend": backend,
                             "batch": int(batch), "p50_ms": s["p50_ms"], "p90_ms": s["p90_ms"],
                             "p99_ms": s["p99_ms"], "throughput": s["throughput"],
                             "model_bytes": e["model_bytes"],
                             "peak_rss_bytes": e["memory"].get("peak_rss_bytes"),
                             "learn_us_per_sample": learning.get("learn_us_per_sample"),
                             "learn_class_us_per_sample": learning.get("learn_class_us_per_sample"),
                             "acc": m.get("acc"), "bwt": m.get("bwt"),
                             "forgetting": m.get("forgetting"), "front": e.get("front"),
                             "meets_target": e.get("meets_target")})
    return rows


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(report):
        writer.writerow({k: "" if v is None else (repr(v) if isinstance(v, float) else v)
                         for k, v in row.items()})
    return buf.getvalue()


def default_name(report: dict) -> str:
    labels = [re.sub(r"[^A-Za-z0-9.+-]+", "-", e["label"]).strip("-") for e in report["targets"]]
    return "_".join(labels)[:80] or "profile"


def _targets_of(folder: Path) -> list[str] | None:
    try:
        old = json.loads((folder / "profile.json").read_text())
        return [t["given"] for t in old["targets"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_out(out: Path, given: list[str], force: bool) -> Path:
    """``--out``, checked before anything is measured: a file, a folder of other content, or
    another profile's folder (without ``force``) is refused."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder for the profile")
    if out.is_dir() and any(out.iterdir()) and not force:
        theirs = _targets_of(out)
        if theirs is None:
            raise OutputError(f"--out {out} is not empty and holds no profile; choose another "
                              f"folder (or --force to write into it)")
        if theirs != given:
            raise OutputError(f"--out {out} holds the profile of other targets "
                              f"({', '.join(theirs)}); choose another folder or pass --force to "
                              f"replace it")
    return out


def choose_out(report: dict, out: Path | None, force: bool) -> Path:
    """The folder to write: ``out``, or ``runs/profile/<labels>`` numbered past other profiles."""
    mine = [t["given"] for t in report["targets"]]
    if out is not None:
        return check_out(out, mine, force)
    base = Path("runs") / "profile" / default_name(report)
    candidate, n = base, 1
    while candidate.exists() and _targets_of(candidate) != mine:
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def write_outputs(report: dict, out: Path) -> list[str]:
    """Write profile.json, profile.csv and pareto.png into ``out``; returns notes (a skipped
    plot)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    rows = [{"label": e["label"], "p50_ms": main_latency(e), "front": bool(e.get("front")),
             "forgetting": (e["metrics"] or {}).get("forgetting"),
             "acc": (e["metrics"] or {}).get("acc")} for e in report["targets"]]
    note = plot_pareto(rows, out / "pareto.png")
    atomic_write_bytes(out / "profile.csv", to_csv(report).encode())
    atomic_write_bytes(out / "profile.json", (json.dumps(report, indent=2) + "\n").encode())
    return [note] if note else []


def _ms(entry: dict, backend_prefix: str, batch: int, key: str = "p50_ms") -> float | None:
    for name, per_batch in entry["latency"].items():
        if name.startswith(backend_prefix) and batch in per_batch:
            return per_batch[batch][key]
    return None


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """The terminal table: one row per target, '-' where a figure could not be measured."""
    big = max(report["budget"]["batches"])
    head = ["target", "KiB", "ort p50 b1 ms", "p99 b1", f"ort b{big}/s", "torch p50 b1",
            "ort/torch", "peak RSS MiB", "learn us/sample b32", "learn_class us/sample", "ACC", "BWT",
            "forgetting", "front"]
    if report["device_profile"]:
        head.append(f"<= {report['device_profile']['latency_target_ms']:g} ms")

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    rows = []
    for e in report["targets"]:
        m, learn = e["metrics"] or {}, e["learning"] or {}
        ort_b1, torch_b1 = _ms(e, "ort-", 1), _ms(e, "torch-cpu", 1)
        thr = _ms(e, "ort-", big, "throughput")
        rss = e["memory"].get("peak_rss_bytes")
        row = [e["label"], f(e["model_bytes"] / 1024, ".1f"), f(ort_b1, ".4f"),
               f(_ms(e, "ort-", 1, "p99_ms"), ".4f"), f(thr, ",.0f"), f(torch_b1, ".4f"),
               f(ort_b1 / torch_b1 if ort_b1 and torch_b1 else None, ".2f"),
               f(rss / 2**20 if rss else None, ".1f"), f(learn.get("learn_us_per_sample"), ".2f"),
               f(learn.get("learn_class_us_per_sample"), ".2f"), f(m.get("acc"), ".2%"),
               f(m.get("bwt"), "+.2%"), f(m.get("forgetting"), ".2%"),
               {True: "yes", False: "no", None: "-"}[e.get("front")]]
        if report["device_profile"]:
            row.append({True: "pass", False: "FAIL", None: "-"}[e.get("meets_target")])
        rows.append(row)
    return head, rows

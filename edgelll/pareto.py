"""The latency-forgetting Pareto front of ``edgelll profile`` and its plot.

A point (p50 latency at batch 1, forgetting) is on the front when no other point dominates it:
at most as slow and at most as forgetful, and strictly better in one of the two (both are
minimised; Deb 2001, the usual weak-dominance definition). Duplicates dominate neither each
other, so both stay on the front; of two points with the same latency the less forgetful one
dominates. Forgetting is Chaudhry et al. 2018's (arXiv:1801.10112), as the run measured it.

matplotlib is imported only to draw, and a device install may lack it: then the plot is skipped
with a note.
"""

from __future__ import annotations

from pathlib import Path


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For each (latency, forgetting) point, whether it is on the front (both minimised)."""
    return [not any(dominates(q, p) for j, q in enumerate(points) if j != i)
            for i, p in enumerate(points)]


def plot_pareto(rows: list[dict], path: Path) -> str | None:
    """Draw forgetting and final ACC against p50 latency, the front marked and each point
    labelled, into ``path`` (written atomically); returns a note when it could not draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (a device install): pareto.png was not drawn"
    import io

    from .runtime.format import atomic_write_bytes

    pts = [r for r in rows if r.get("p50_ms") is not None and r.get("forgetting") is not None]
    if not pts:
        return "no target has both a latency and a forgetting: pareto.png was not drawn"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    front = sorted((r for r in pts if r["front"]), key=lambda r: r["p50_ms"])
    for r in pts:
        style = dict(marker="o", s=60, zorder=3, color="tab:red" if r["front"] else "tab:gray")
        left.scatter(r["p50_ms"], 100 * r["forgetting"], **style)
        left.annotate(r["label"], (r["p50_ms"], 100 * r["forgetting"]), textcoords="offset points",
                      xytext=(5, 5), fontsize=8)
        if r.get("acc") is not None:
            right.scatter(r["p50_ms"], 100 * r["acc"], **style)
            right.annotate(r["label"], (r["p50_ms"], 100 * r["acc"]), textcoords="offset points",
                           xytext=(5, 5), fontsize=8)
    left.step([r["p50_ms"] for r in front], [100 * r["forgetting"] for r in front], where="post",
              color="tab:red", lw=1, label="Pareto front (latency, forgetting)")
    left.set(xlabel="p50 latency at batch 1 (ms, ONNX Runtime)", ylabel="forgetting (points)",
             title="forgetting against latency (lower left is better)")
    right.set(xlabel="p50 latency at batch 1 (ms, ONNX Runtime)", ylabel="final ACC (%)",
              title="final accuracy against latency (red: on the front)")
    left.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return None

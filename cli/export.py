"""``edgelll export RUN_DIR``: parse options, call :func:`edgelll.export.export_run`, print what
was written and measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import handle_errors, stderr_is_tty


@handle_errors
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory edgelll learn wrote", show_default=False)],
    format: Annotated[str, typer.Option("--format", "-f", help="onnx (fp32) | onnx-int8 (static QDQ, per-channel, calibrated) | onnx-int8-dynamic")] = "onnx",
    opset: Annotated[int, typer.Option(help="ONNX opset (17 is tested)")] = 17,
    out: Annotated[Optional[Path], typer.Option(help="the .onnx file to write", show_default="RUN_DIR/export/model[-int8[-dynamic]][-extractor].onnx")] = None,
    split: Annotated[bool, typer.Option("--split", help="write the feature extractor as ONNX and the head beside it as .npz")] = False,
    head: Annotated[str, typer.Option(help="split head: trained (the run's) | ncm (fitted on the extractor's features of the run's exemplars)")] = "trained",
    calibration: Annotated[str, typer.Option(help="int8 calibration data: buffer (the run's exemplars, else training data) | holdout (a slice of training data)")] = "buffer",
    calib_samples: Annotated[int, typer.Option(help="samples to calibrate int8 on")] = 256,
    max_acc_drop: Annotated[float, typer.Option(help="points of ACC int8 may lose against fp32 before the export fails")] = 1.0,
    checkpoint: Annotated[Optional[str], typer.Option(help="the checkpoint to export, expNNN", show_default="the last")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an export of another run or a later checkpoint")] = False,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads for the checks and timings")] = 1,
) -> None:
    """Export a run's model to ONNX (fp32 or int8), checked against torch on every test set."""
    from edgelll.export import ExportOptions, export_run

    opts = ExportOptions(format=format, opset=opset, out=out, split=split, head=head,
                         calibration=calibration, calib_samples=calib_samples,
                         max_acc_drop=max_acc_drop, checkpoint=checkpoint, force=force,
                         threads=threads)
    # Progress only on a terminal: a failed check must leave one line on stderr, its error.
    echo = (lambda line: typer.echo(line, err=True)) if stderr_is_tty() else None
    entry = export_run(run_dir, opts, echo=echo)
    folder = Path(out).parent if out is not None else run_dir / "export"
    m = entry["metrics"]
    typer.echo(f"wrote {folder / entry['file']} ({entry['bytes']:,} bytes, {entry['format']}, "
               f"opset {entry['opset']}, source {entry['source']['checkpoint']})")
    if "head_file" in entry:
        typer.echo(f"head: {folder / entry['head_file']} ({entry['head_bytes']:,} bytes, "
                   f"{entry['head']} -> {entry['head_kind']})")
    p = entry["parity"]
    int8 = "fp32_metrics" in entry
    typer.echo(f"{'fp32 graph ' if int8 else ''}parity with torch: max |difference| "
               f"{p['max_abs_diff']:.2e}, labels agree on {p['label_agreement']:.2%} of "
               f"{p['samples']} test samples")
    typer.echo(f"{'int8 (re-measured) ' if int8 else ''}ACC {m['acc']:.2%}  BWT {m['bwt']:+.2%}  "
               f"forgetting {m['forgetting']:.2%}")
    if int8:
        drop = entry["acc_drop_points"]
        change = f"loses {drop:.2f} points" if drop > 0 else f"gains {-drop:.2f} points"
        typer.echo(f"fp32 ACC {entry['fp32_metrics']['acc']:.2%}: int8 {change} (allowed loss "
                   f"{max_acc_drop:g}); size {entry['size_ratio']:.2f}x fp32 "
                   f"({entry['fp32_bytes']:,} bytes)")
    if "trained_head_metrics" in entry:
        typer.echo(f"trained head ACC {entry['trained_head_metrics']['acc']:.2%} on the same "
                   f"extractor")
    t = entry["timing"]
    if "int8_median_us" in t:
        typer.echo(f"batch-1 latency: fp32 {t['fp32_median_us']:.1f} us, int8 "
                   f"{t['int8_median_us']:.1f} us (median, {threads} thread(s))")
        if "note" in t:
            typer.echo(f"note: {t['note']}")
    else:
        typer.echo(f"batch-1 latency: {t['fp32_median_us']:.1f} us (median, {threads} thread(s))")

"""One export of one run (what :func:`edgelll.export.export_run` drives): build the graph of a
checkpoint, check it against torch, re-measure what quantisation or a refitted head changes, and
write the files at the very end."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import CheckpointError
from .export import (FORMATS, MIN_AGREEMENT, PARITY_TOL, config_digest, merged_report,
                     report_entry, summary)
from .export_int8 import (DYNAMIC_SETTINGS, STATIC_SETTINGS, calibration_samples,
                          compare_latency, median_latency_us, quantize)
from .export_onnx import (ExportError, accuracy, agreement, graph_inputs, max_abs_diff, run_session,
                          session, stream_labels, test_sets, to_onnx, torch_outputs, with_metadata)
from .export_split import as_whole, fit_ncm, head_arrays, head_scores
from .runtime.format import EXPORT_FORMAT, atomic_write_bytes, save_head, units_to_labels

NCM_SAMPLES = 2000  # exemplars (or training samples) an NCM head is fitted on, at most


@dataclass
class Built:
    model: object
    fp32: bytes
    data: bytes  # the graph written: fp32, or its int8 form
    trained: dict | None  # the trained head's arrays (split)
    head: dict | None  # the head written (split): trained or refitted
    calibration: dict | None
    fp32_head: dict | None = None  # the same head on the fp32 extractor (the int8 baseline)


class ExportJob:
    def __init__(self, run_dir: Path, index: int, found: dict, opts, echo) -> None:
        from .config import LearnConfig
        from .runs import load_checkpoint

        self.run_dir, self.index, self.found = run_dir, index, found
        self.opts, self.echo = opts, echo
        self.ckpt = load_checkpoint(found[index], map_location="cpu")
        if "spec" not in self.ckpt or "config" not in self.ckpt:
            raise CheckpointError(f"checkpoint {found[index]} has no model spec or config; it "
                                  f"was written by an older edgelll and cannot be exported")
        self.cfg = LearnConfig.from_dict(self.ckpt["config"])
        self.digest = config_digest(self.ckpt["config"])
        self.run_name = run_dir.resolve().name
        self.fmt = FORMATS[opts.format]
        self.graph = "extractor" if opts.split else "whole"

    # -- building -----------------------------------------------------------------------------
    def _model(self, ckpt: dict, path: Path):
        from .artifact import model_from_checkpoint

        return model_from_checkpoint(ckpt, path)

    def build(self, ckpt: dict, path: Path) -> Built:
        opts, model = self.opts, self._model(ckpt, path)
        fp32 = to_onnx(model, self.graph, opts.opset)
        trained = None
        if opts.split:
            try:
                trained = head_arrays(model)
            except ValueError as exc:
                raise ExportError(f"this run's head cannot be split from its extractor ({exc}); "
                                  f"export it without --split") from None
        data, calib = fp32, None
        if self.fmt.quant == "static":
            x, _, t, source = calibration_samples(ckpt, self.stream, opts.calibration,
                                                  opts.calib_samples, self.cfg.seed)
            data = quantize(fp32, "static", graph_inputs(model, self.graph), (x, t),
                            keep_float(model))
            calib = {**STATIC_SETTINGS, "calibration": source, "samples": int(len(x))}
        elif self.fmt.quant == "dynamic":
            data = quantize(fp32, "dynamic", graph_inputs(model, self.graph),
                            keep_float=keep_float(model))
            calib = dict(DYNAMIC_SETTINGS)
        head = fp32_head = trained
        if opts.split and opts.head == "ncm":
            head = self.fit_ncm(ckpt, data, trained)
            fp32_head = head if data is fp32 else self.fit_ncm(ckpt, fp32, trained)
        return Built(model, fp32, data, trained, head, calib, fp32_head)

    def fit_ncm(self, ckpt: dict, graph: bytes, trained: dict) -> dict:
        """An NCM head on this extractor's features of the run's exemplars (else training data)."""
        x, y, t, source = calibration_samples(ckpt, self.stream, "buffer", NCM_SAMPLES,
                                              self.cfg.seed)
        feats = run_session(session(graph, self.opts.threads), x)
        head = fit_ncm(trained, feats, stream_labels(self.stream, y, t), t)
        head["fitted_on"] = {"source": source, "samples": int(len(x))}
        return head

    # -- checking -----------------------------------------------------------------------------
    def row(self, data: bytes, model, head: dict | None) -> list[float]:
        """Accuracy on every test set of the stream, in ONNX Runtime."""
        sess, accs = session(data, self.opts.threads), []
        for x, y, t in self.sets:
            if head is None:
                accs.append(accuracy(run_session(sess, x, t),
                                     lambda best, t: units_to_labels(model.labels, best, t), y, t))
            else:
                rows = np.asarray(head["labels"])
                accs.append(accuracy(head_scores(head, run_session(sess, x), t),
                                     lambda best, t: rows[best], y, t))
        return accs

    def parity(self, b: Built) -> dict:
        """fp32 ONNX Runtime against torch on every test set; a failure is an ExportError."""
        x = np.concatenate([s[0] for s in self.sets])
        t = np.concatenate([s[2] for s in self.sets])
        import torch

        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        whole = torch_outputs(b.model, xt, tt, "whole")
        got = run_session(session(b.fp32, self.opts.threads), x, t)
        if b.trained is None:
            diff, agree, out = max_abs_diff(got, whole), agreement(got, whole), {}
        else:
            feats = torch_outputs(b.model, xt, tt, "extractor")
            scores = head_scores(b.trained, got, t)
            ref = as_whole(b.trained, whole, t)
            out = {"features_max_abs_diff": max_abs_diff(got, feats)}
            diff = max(out["features_max_abs_diff"], max_abs_diff(scores, ref))
            agree = agreement(scores, ref)
        out.update({"max_abs_diff": diff, "label_agreement": agree, "samples": int(len(x)),
                    "tolerance": PARITY_TOL, "min_agreement": MIN_AGREEMENT})
        if not (diff <= PARITY_TOL) or agree < MIN_AGREEMENT:
            raise ExportError(f"the fp32 ONNX graph does not match torch on the test sets (max "
                              f"|score difference| {diff:.3g}, tolerance {PARITY_TOL:g}; labels "
                              f"agree on {agree:.2%}); nothing was written; try another --opset")
        return out

    def remeasure(self, last: Built) -> dict:
        """The accuracy matrix of what is written (and of fp32 / the trained head beside it),
        one checkpoint at a time, every checkpoint built the same way."""
        from .runs import load_checkpoint

        missing = [k for k in range(self.index + 1) if k not in self.found]
        if missing:
            raise ExportError(f"re-measuring the accuracy matrix needs every checkpoint up to "
                              f"exp{self.index:03d}; exp{missing[0]:03d} is missing")
        rows, fp32_rows, trained_rows = [], [], []
        for k in range(self.index + 1):
            if k == self.index:
                b = last
            else:
                b = self.build(load_checkpoint(self.found[k], map_location="cpu"), self.found[k])
            rows.append(self.row(b.data, b.model, b.head))
            if self.fmt.quant:
                fp32_rows.append(self.row(b.fp32, b.model, b.fp32_head))
            if self.opts.head == "ncm":
                trained_rows.append(self.row(b.data, b.model, b.trained))
            self.echo(f"re-measured checkpoint exp{k:03d}: ACC so far "
                      f"{np.mean(rows[-1][: k + 1]):.2%}")
        out = {"metrics": summary(rows)}
        if fp32_rows:
            out["fp32_metrics"] = summary(fp32_rows)
        if trained_rows:
            out["trained_head_metrics"] = summary(trained_rows)
        return out

    # -- the whole job ------------------------------------------------------------------------
    def run(self, out: Path) -> dict:
        from .data import load_dataset
        from .fscil import fscil_spec
        from .streams import make_stream

        start, cfg, opts = time.perf_counter(), self.cfg, self.opts
        self.stream = make_stream(load_dataset(cfg.data, layout=cfg.layout), cfg.stream,
                                  cfg.scenario, cfg.tasks, cfg.class_order, cfg.seed, "cpu",
                                  fscil_spec(cfg))
        self.sets = test_sets(self.stream)
        b = self.build(self.ckpt, self.found[self.index])
        parity = self.parity(b)
        self.echo(f"parity on {parity['samples']} test samples: max |difference| "
                  f"{parity['max_abs_diff']:.2e}, labels agree on {parity['label_agreement']:.2%}")
        if self.fmt.quant or opts.head == "ncm":
            measured = self.remeasure(b)
        else:
            measured = {"metrics": summary(self.ckpt["acc"])}
        fields = {"parity": parity, **measured}
        if self.fmt.quant:  # the ACC check first: a refused export is not timed
            fields.update(self.quant_checks(b, measured))
        fields["timing"] = self.timing(b)
        return self.write(out, b, fields, time.perf_counter() - start)

    def quant_checks(self, b: Built, measured: dict) -> dict:
        acc, fp32 = measured["metrics"]["acc"], measured["fp32_metrics"]["acc"]
        drop = (fp32 - acc) * 100.0
        if drop > self.opts.max_acc_drop:
            change = f"{drop:.2f} points below" if drop > 0 else f"{-drop:.2f} points above"
            raise ExportError(f"{self.fmt.name} ACC {acc:.2%} is {change} fp32 {fp32:.2%}, a drop "
                              f"over --max-acc-drop {self.opts.max_acc_drop:g}; "
                              f"nothing was written; calibrate on more samples (--calib-samples)"
                              f", try --calibration holdout or onnx-int8-dynamic, or allow more")
        x = np.concatenate([s[0] for s in self.sets])
        t = np.concatenate([s[2] for s in self.sets])
        q = run_session(session(b.data, self.opts.threads), x, t)
        f = run_session(session(b.fp32, self.opts.threads), x, t)
        return {"acc_drop_points": drop, "quantization": b.calibration,
                "int8_vs_fp32": {"max_abs_diff": max_abs_diff(q, f), "agreement": agreement(q, f)}}

    def timing(self, b: Built) -> dict:
        x, _, t = self.sets[-1]
        feed = {"x": x[:1]}
        if "task" in graph_inputs(b.model, self.graph):
            feed["task"] = t[:1]
        fp32 = session(b.fp32, self.opts.threads)
        if not self.fmt.quant:
            return {"batch": 1, "fp32_median_us": median_latency_us(fp32, feed,
                                                                    self.opts.latency_runs)}
        return compare_latency(fp32, session(b.data, self.opts.threads), feed,
                               self.opts.latency_runs)

    def metadata(self, b: Built, out: Path, metrics: dict) -> dict:
        model = b.model
        meta = {"format": EXPORT_FORMAT, "edgelll_version": __version__,
                "export_format": self.fmt.name, "graph": self.graph,
                "input": model.preprocess.spec(), "inputs": graph_inputs(model, self.graph),
                "routes_by_task": bool(model.routes_by_task), "labels": model.labels,
                "spec": model.spec(), "metrics": metrics,
                "memory": {"limit": self.cfg.memory,
                           "measured": int(sum(self.ckpt.get("peak_memory", {}).values()))},
                "config_digest": self.digest, "strategies": list(self.cfg.strategies),
                "source": {"run": self.run_name, "checkpoint": f"exp{self.index:03d}"},
                "quantization": b.calibration}
        if b.head is not None:
            meta["head_file"] = head_path(out).name
            meta["head"] = self.opts.head
        return meta

    def write(self, out: Path, b: Built, fields: dict, seconds: float) -> dict:
        data = with_metadata(b.data, self.metadata(b, out, fields["metrics"]))
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from .errors import OutputError
            raise OutputError(f"cannot create {out.parent}: {exc.strerror or exc}; choose a "
                              f"writable --out") from None
        entry = report_entry(self.opts, file=out.name, bytes=len(data), graph=self.graph,
                             source={"run": self.run_name, "checkpoint": f"exp{self.index:03d}"},
                             config_digest=self.digest, **fields)
        if self.fmt.quant:  # both with the same metadata: the files a device would hold
            entry["fp32_bytes"] = len(with_metadata(b.fp32, self.metadata(b, out, {})))
            entry["size_ratio"] = len(data) / entry["fp32_bytes"]
        if b.head is not None:
            hp = head_path(out)
            save_head(hp, {k: v for k, v in b.head.items() if k not in ("units", "fitted_on")})
            entry.update(head_file=hp.name, head_bytes=hp.stat().st_size, head=self.opts.head,
                         head_kind=b.head["kind"], head_fitted_on=b.head.get("fitted_on"))
        atomic_write_bytes(out, data)
        entry["seconds"] = seconds
        report = out.parent / "report.json"
        import json
        atomic_write_bytes(report, (json.dumps(merged_report(report, out.name, entry), indent=2)
                                    + "\n").encode())
        return entry


def keep_float(model) -> tuple[str, ...]:
    """Module prefixes the quantiser leaves in float: the input's normalisation always, and a
    nearest-mean head's distances (an int8 rounding of ||f||^2 - 2 f.mu + ||mu||^2 loses the
    small differences between classes that decide the answer)."""
    return ("/model/preprocess/",) + (("/model/head/",) if model.head.kind == "nearest-mean"
                                      else ())


def head_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}-head.npz")

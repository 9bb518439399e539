"""ONNX Runtime sessions made one way for the runtime and the profiler: explicit execution
providers and explicit thread counts, never ONNX Runtime's implicit defaults (which pick every
core for intra-op parallelism and, for some builds, whatever providers happen to be installed, so
latency would depend on the host rather than on the profile asked for).

A file that is missing, not ONNX or truncated is one :class:`DataError` line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, DataError

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def check_providers(providers: Sequence[str]) -> list[str]:
    """The providers as a list, each one available in this onnxruntime build (else ConfigError)."""
    import onnxruntime as ort

    if isinstance(providers, str):
        providers = (providers,)
    providers = list(providers)
    if not providers:
        raise ConfigError("no ONNX Runtime execution provider given; pass e.g. "
                          "providers=('CPUExecutionProvider',)")
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ConfigError(f"ONNX Runtime execution provider {', '.join(missing)} is not available "
                          f"in this onnxruntime build; choose from: {', '.join(available)}")
    return providers


def _check_threads(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1 (got {value!r}); "
                          f"ONNX Runtime's implicit default (0) is not used")
    return value


def session_options(threads: int = 1, inter_threads: int = 1):
    """``SessionOptions`` with explicit intra- and inter-op thread counts, sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _check_threads("threads", threads)
    opts.inter_op_num_threads = _check_threads("inter_threads", inter_threads)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: ORT's warnings are not ours to print
    return opts


def make_session(path: str | Path, providers: Sequence[str] = DEFAULT_PROVIDERS, threads: int = 1,
                 inter_threads: int = 1):
    """An ``onnxruntime.InferenceSession`` on ``path`` with the given providers and thread counts.

    Raises :class:`DataError` for a missing, unreadable, non-ONNX or truncated file and
    :class:`ConfigError` for a provider this build lacks or a thread count below 1."""
    import onnxruntime as ort

    path = Path(path)
    providers = check_providers(providers)
    opts = session_options(threads, inter_threads)
    if not path.is_file():
        raise DataError(f"{path} does not exist" if not path.exists() else
                        f"{path} is not a file; give the path of an .onnx model")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise DataError(f"{path} is empty; export the model again with edgelll export")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime's errors are plain Exception subclasses
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a valid ONNX model (truncated or another format?): "
                        f"{first}; export it again with edgelll export") from None

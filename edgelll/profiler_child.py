"""The inference process whose peak memory ``edgelll profile`` reports: it imports only the
device runtime (numpy, onnxruntime, ``edgelll.runtime``), loads one ONNX file, runs inference at
the largest batch size, and prints its ``ru_maxrss`` (peak resident set) as JSON, before the
session and at the end. Run as ``python -m edgelll.profiler_child SPEC_JSON``.

ru_maxrss is kibibytes on Linux and bytes on macOS (getrusage(2)); both are reported in bytes.
On Linux, ru_maxrss survives execve (the kernel folds the pre-exec address space, a copy of the
parent's, into it), so a child of a process holding torch would report torch's footprint: there
the peak is the new address space's own high-water mark, ``VmHWM`` in /proc/self/status, and
ru_maxrss is kept beside it as ``ru_maxrss_bytes``.
"""

from __future__ import annotations

import json
import resource
import sys


def _ru_maxrss() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _maxrss() -> int:
    """This process's peak resident set in bytes (VmHWM on Linux, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _ru_maxrss()


def main(spec: dict) -> dict:
    import numpy as np

    from edgelll.runtime.session import make_session

    baseline = _maxrss()
    session = make_session(spec["path"], spec["providers"], spec["threads"])
    rng = np.random.default_rng(0)
    feed = {}
    for inp in session.get_inputs():
        shape = [spec["batch"], *spec["shapes"][inp.name]]
        dtype = np.dtype(spec["dtypes"][inp.name])
        feed[inp.name] = (np.zeros(shape, dtype) if dtype.kind in "iu" and inp.name == "task"
                          else rng.integers(0, 256, size=shape).astype(dtype))
    for _ in range(spec["runs"]):
        session.run(None, feed)
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": _maxrss(),
            "ru_maxrss_bytes": _ru_maxrss(),
            "torch_loaded": "torch" in sys.modules}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))

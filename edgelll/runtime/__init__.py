"""What runs on a device: numpy, onnxruntime and the array API only, never torch or the onnx
package (``import edgelll.runtime`` must work where neither is installed).

``Model.load(path, state=None)`` loads an export made by ``edgelll export`` (whole, or ``--split``
to keep learning in a numpy head) or a foreign ONNX file; ``make_session`` makes every ONNX Runtime
session with explicit providers and thread counts.
"""

from .buffer import ReservoirBuffer
from .heads import Head, LinearHead, NCMHead, head_from_arrays
from .model import Model
from .session import DEFAULT_PROVIDERS, make_session

__all__ = ["DEFAULT_PROVIDERS", "Head", "LinearHead", "Model", "NCMHead", "ReservoirBuffer",
           "head_from_arrays", "make_session"]

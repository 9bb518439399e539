"""Datasets: one validated container and the loaders that fill it.

Every way of getting data in (arrays or tensors in memory, an ``.npz`` archive, a folder of
MNIST-style IDX files, the embedded UCI digits) ends in :func:`from_arrays`, the single place where
arrays are checked and normalised. Whatever a user can get wrong raises :class:`DataError` (or
:class:`ConfigError` for a bad spec string) with a one-line message that names the offending path
or array and says what to do; raw numpy, zipfile or OS errors never escape.

Images are kept as ``uint8`` when they arrive that way: MNIST-sized sets then cost a quarter of the
memory of ``float32``, which matters on the small devices this toolkit targets.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import math
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelll.errors import ConfigError, DataError, unknown_name
from edgelll.layout import to_nchw

__all__ = [
    "DATASETS",
    "Dataset",
    "from_arrays",
    "load_dataset",
    "load_idx_dir",
    "load_npz",
    "read_npz_arrays",
]

DATASETS: dict[str, str] = {
    "digits": "UCI handwritten digits, 1x8x8 uint8, 10 classes, 1433 train / 364 test (embedded)",
    "mnist": "MNIST handwritten digits, 1x28x28 uint8, 10 classes, 60000 / 10000; "
    "pass mnist=PATH (.npz file or IDX folder)",
    "fashion-mnist": "Fashion-MNIST clothing images, 1x28x28 uint8, 10 classes, 60000 / 10000; "
    "pass fashion-mnist=PATH (.npz file or IDX folder)",
    "omniglot": "Omniglot characters (Lake et al. 2015), 1x28x28 uint8, 964 background + 659 "
    "evaluation characters, the last 5 of each one's 20 drawings held out for test; pass "
    "omniglot=PATH (omniglot28.npz)",
}

# Named sets that are never shipped or downloaded: the user points at a local copy.
_PATH_DATASETS = ("mnist", "fashion-mnist", "omniglot")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_IDX_PARTS = (  # (prefix, kind, ndim digit) of the four files of an IDX folder
    ("train", "images", 3),
    ("train", "labels", 1),
    ("t10k", "images", 3),
    ("t10k", "labels", 1),
)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of images ``(N, C, H, W)`` or feature vectors ``(N, D)``.

    Build it with :func:`from_arrays` or a loader, which validate the arrays; the constructor
    itself trusts its arguments.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    # Classes an FSCIL base session draws from (Omniglot's background characters); None: any.
    base_pool: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None  # by label, where the data names its classes

    @property
    def n_classes(self) -> int:
        """Largest label plus one, over train and test."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def classes(self) -> list[int]:
        """Sorted distinct training labels."""
        return [int(c) for c in np.unique(self.y_train)]

    def __repr__(self) -> str:
        # The dataclass default would print every pixel.
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, dtype={self.x_train.dtype}, "
            f"n_classes={self.n_classes}, source={self.source!r})"
        )


# --------------------------------------------------------------------------------------------
# Validation


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _as_array(value: Any, what: str) -> np.ndarray:
    """A numpy view of an array-like or torch tensor, without copying when possible."""
    if value is None:
        raise DataError(f"{what} is missing (None); pass a numpy array or torch tensor")
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        try:
            value = tensor.numpy()
        except (TypeError, RuntimeError):
            # bfloat16 and friends have no numpy dtype; float32 holds their values exactly.
            value = tensor.float().numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{what} cannot be turned into an array ({_one_line(exc)}); "
            "pass a rectangular numpy array or torch tensor"
        ) from None


def _to_float32(x: np.ndarray, what: str) -> np.ndarray:
    n_nan = int(np.isnan(x).sum())
    n_inf = int(np.isinf(x).sum())
    if n_nan or n_inf:
        raise DataError(
            f"{what} holds {n_nan} NaN and {n_inf} Inf values; "
            "clean or impute them before loading (all features must be finite)"
        )
    with np.errstate(over="ignore"):  # overflow is reported below, as a DataError
        out = x.astype(np.float32, copy=False)
    if x.dtype != np.float32 and not np.isfinite(out).all():
        n_big = int((~np.isfinite(out)).sum())
        raise DataError(
            f"{what} holds {n_big} values too large for float32 (|x| > 3.4e38); rescale the data"
        )
    return out


def _check_x(value: Any, what: str, layout: str = "auto") -> np.ndarray:
    """Shape ``(N, C, H, W)`` (from ``layout``) or ``(N, D)``, dtype uint8 or float32, all values
    finite."""
    x = _as_array(value, what)
    if x.dtype.kind not in "iuf":
        raise DataError(
            f"{what} has dtype {x.dtype}; inputs must be numeric (integer or float), "
            "not object, bool, complex or text"
        )
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{what} has shape {x.shape}; expected (N, D) features, (N, H, W) or "
            "(N, C, H, W) images"
        )
    if x.size == 0:
        raise DataError(f"{what} is empty (shape {x.shape}); every split needs samples")
    if x.ndim == 3:
        x = x[:, None]  # a view: grey images get their single channel axis
    elif x.ndim == 4:
        x = to_nchw(x, layout, what)
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind in "iu":
        if int(x.min()) >= 0 and int(x.max()) <= 255:
            return x.astype(np.uint8)
        return x.astype(np.float32)
    return _to_float32(x, what)


def _check_y(value: Any, what: str) -> np.ndarray:
    """1-D non-negative int64 labels."""
    y = _as_array(value, what)
    if y.ndim != 1:
        hint = "; flatten it with y.reshape(-1)" if y.ndim == 2 and 1 in y.shape else ""
        raise DataError(f"{what} has shape {y.shape}; labels must be 1-D (N,){hint}")
    if y.size == 0:
        raise DataError(f"{what} is empty; every split needs labels")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.floor(y))
        if bad.any():
            raise DataError(
                f"{what} holds {int(bad.sum())} non-integer values (e.g. {y[bad][0]!r}); "
                "labels must be whole class ids 0..K-1"
            )
    elif y.dtype.kind not in "iu":
        raise DataError(
            f"{what} has dtype {y.dtype}; labels must be integers (or whole-number floats)"
        )
    if y.min() < 0:
        raise DataError(
            f"{what} holds {int((y < 0).sum())} negative labels (min {y.min()!r}); "
            "labels must be class ids 0..K-1"
        )
    if y.max() > np.iinfo(np.int64).max:
        raise DataError(f"{what} holds labels larger than int64 allows; map them to ids 0..K-1")
    return y.astype(np.int64, copy=False)


def _check_label_range(ytr: np.ndarray, yte: np.ndarray) -> None:
    """Labels index tables of ``max label + 1`` entries; refuse a label so large that the table
    would dwarf the data (a stray 2**40 asks for terabytes) before anything is sized by it."""
    bound = max(2**16, len(ytr))
    top = int(max(ytr.max(), yte.max()))
    if top >= bound:
        raise DataError(
            f"the largest label is {top}, but labels must be class ids below {bound} "
            f"(2**16 or the number of training samples); map them to 0..K-1, e.g. with "
            "numpy.unique(y, return_inverse=True)"
        )


def _check_pair(x: np.ndarray, y: np.ndarray, split: str) -> None:
    if len(x) != len(y):
        raise DataError(
            f"x_{split} has {len(x)} samples but y_{split} has {len(y)} labels; "
            "they must have one label per sample"
        )


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    name: str = "arrays",
    source: str = "arrays",
    layout: str = "auto",
) -> Dataset:
    """Validate and normalise four arrays (numpy or torch) into a :class:`Dataset`.

    Images ``(N, H, W)`` become ``(N, 1, H, W)``; 4-D images are read as ``layout``: ``nchw``,
    ``nhwc`` (stored transposed to channels first) or ``auto`` (see :mod:`edgelll.layout`); ``uint8`` inputs are kept without copying,
    other integers become ``uint8`` when they fit and ``float32`` otherwise, floats become
    ``float32``; labels become ``int64``. Raises :class:`DataError` on anything inconsistent.
    """
    xtr, xte = _check_x(x_train, "x_train", layout), _check_x(x_test, "x_test", layout)
    ytr, yte = _check_y(y_train, "y_train"), _check_y(y_test, "y_test")
    _check_label_range(ytr, yte)
    _check_pair(xtr, ytr, "train")
    _check_pair(xte, yte, "test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(
            f"x_train samples have shape {xtr.shape[1:]} but x_test samples have shape "
            f"{xte.shape[1:]}; train and test must share one sample shape"
        )
    if xtr.dtype != xte.dtype:
        # e.g. integer pixels where only one split fits uint8: one dtype keeps batching simple.
        xtr, xte = xtr.astype(np.float32), xte.astype(np.float32)
    train_classes = np.unique(ytr)
    unseen = np.setdiff1d(np.unique(yte), train_classes)
    if unseen.size:
        shown = ", ".join(str(int(c)) for c in unseen[:10]) + (", ..." if unseen.size > 10 else "")
        raise DataError(
            f"y_test holds classes never seen in y_train ({shown}); "
            "drop those test samples or add training samples for them"
        )
    if train_classes.size < 2:
        raise DataError(
            f"y_train holds only one class ({int(train_classes[0])}); "
            "a classification task needs at least 2 classes"
        )
    return Dataset(name=str(name), x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
                   source=str(source))


def _from_file_arrays(path: Path, arrays: dict[str, np.ndarray], name: str | None,
                      layout: str = "auto") -> Dataset:
    """:func:`from_arrays` with the file's path put in front of any complaint."""
    try:
        return from_arrays(**arrays, name=name or path.stem, source=str(path), layout=layout)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------
# .npz archives


def _existing(path: str | os.PathLike[str], want: str) -> Path:
    """The path, checked to exist as a ``want`` ("file" or "folder")."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path not found: {p}; check the path (data is never downloaded)")
    if want == "file" and p.is_dir():
        raise DataError(
            f"{p} is a folder, not an .npz file; pass the .npz file, or use load_idx_dir "
            "(or load_dataset) for a folder of IDX files"
        )
    if want == "folder" and not p.is_dir():
        raise DataError(
            f"{p} is a file, not a folder of IDX files; use load_npz (or load_dataset) for an .npz"
        )
    _regular(p)
    return p


def _regular(p: Path) -> None:
    """Refuse a FIFO, socket or device: reading one can wait forever for bytes that never come."""
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise DataError(f"cannot read {p} ({_one_line(exc)}); check the path") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise DataError(
            f"{p} is not a regular file or folder (a pipe, socket or device); pass an .npz file "
            "or a folder of IDX files"
        )


def _read_npz(p: Path, keys: tuple[str, ...] = _NPZ_KEYS) -> dict[str, np.ndarray]:
    try:
        npz = np.load(p, allow_pickle=False)
    except ValueError:
        # numpy's fallback for non-zip, non-.npy bytes is unpickling, which we refuse.
        raise DataError(
            f"{p} is not an .npz archive; save the data with numpy.savez(path, x_train=..., "
            "y_train=..., x_test=..., y_test=...)"
        ) from None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read {p} as .npz ({_one_line(exc)}); the file is damaged or not an .npz "
            "archive, re-create it"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(
            f"{p} holds a single .npy array, not an .npz archive; save the four arrays "
            "x_train, y_train, x_test, y_test together with numpy.savez"
        )
    with npz:
        missing = [k for k in keys if k not in npz.files]
        if missing:
            raise DataError(
                f"{p} lacks array(s) {', '.join(missing)} (it holds: "
                f"{', '.join(npz.files) or 'nothing'}); this .npz needs {', '.join(keys)}"
            )
        return {k: _npz_member(npz, p, k) for k in keys}


def _npz_member(npz: Any, p: Path, key: str) -> np.ndarray:
    try:
        return npz[key]
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        if "allow_pickle" in str(exc):
            msg = "is an object array; store numeric arrays (pickled data is never loaded)"
        else:
            msg = f"is corrupt ({_one_line(exc)}); re-create the file"
        raise DataError(f"array {key} in {p} {msg}") from None


def read_npz_arrays(path: str | os.PathLike[str], keys: tuple[str, ...]) -> tuple[Path, dict]:
    """The named arrays of an ``.npz`` (no pickled data), any failure a :class:`DataError`."""
    p = _existing(path, "file")
    try:
        return p, _read_npz(p, keys)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - last guard: a damaged archive fails in many ways
        raise DataError(f"{p} is not a readable .npz archive ({_one_line(exc)}); "
                        "re-create it") from None


def load_npz(path: str | os.PathLike[str], name: str | None = None,
             layout: str = "auto") -> Dataset:
    """Load an ``.npz`` holding ``x_train, y_train, x_test, y_test`` (no pickled data); 4-D
    images are read as ``layout`` (``auto``, ``nchw`` or ``nhwc``)."""
    p, arrays = read_npz_arrays(path, _NPZ_KEYS)
    return _from_file_arrays(p, arrays, name, layout)


# --------------------------------------------------------------------------------------------
# IDX folders (the MNIST distribution format)


def _find_idx(folder: Path, prefix: str, kind: str, ndim: int) -> Path | None:
    for stem in (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_bytes(p: Path) -> bytearray:
    """The decompressed content; a bytearray so the parsed arrays are writable."""
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rb") as f:
                return bytearray(f.read())
        return bytearray(p.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; EOFError means a cut-off download.
        raise DataError(f"cannot read {p} ({_one_line(exc)}); download the file again") from None


def _parse_idx(data: bytearray, p: Path, ndims: tuple[int, ...]) -> np.ndarray:
    """Parse an IDX byte stream: 2 zero bytes, type byte, ndim byte, big-endian uint32 sizes."""
    if len(data) < 4:
        raise DataError(f"{p} is truncated ({len(data)} bytes, no IDX header); download it again")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{p} has bad magic bytes {bytes(data[:4]).hex()} (an IDX file starts with 0000); "
            "it is not an IDX file or is damaged"
        )
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        kind = _IDX_TYPES.get(dtype_code, "unknown")
        raise DataError(
            f"{p} has IDX type 0x{dtype_code:02X} ({kind}); only 0x08 (unsigned byte) is supported"
        )
    if ndim not in ndims:
        raise DataError(f"{p} has {ndim} dimensions; expected {' or '.join(map(str, ndims))}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{p} is truncated inside its IDX header; download it again")
    dims = struct.unpack(f">{ndim}I", bytes(data[4:header]))
    expected, actual = math.prod(dims), len(data) - header  # Python ints: never overflow
    if actual < expected:
        raise DataError(
            f"{p} is truncated: header promises {expected} data bytes for shape {dims}, "
            f"found {actual}; download it again"
        )
    if actual > expected:
        raise DataError(
            f"{p} has {actual - expected} bytes beyond the {expected} its header declares for "
            f"shape {dims}; the file is damaged or not an IDX file"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def load_idx_dir(path: str | os.PathLike[str], name: str | None = None,
                 layout: str = "auto") -> Dataset:
    """Load a folder of MNIST-style IDX files (raw or ``.gz``): train-/t10k- images and labels."""
    folder = _existing(path, "folder")
    found = {part: _find_idx(folder, *part) for part in _IDX_PARTS}
    missing = [f"{pre}-{kind}-idx{nd}-ubyte" for (pre, kind, nd), f in found.items() if f is None]
    if missing:
        raise DataError(
            f"{folder} lacks {', '.join(missing)} (raw or .gz); an IDX folder needs the four "
            "MNIST files train-images, train-labels, t10k-images, t10k-labels"
        )
    arrays: dict[str, np.ndarray] = {}
    for (prefix, kind, _), file in found.items():
        assert file is not None
        split = "train" if prefix == "train" else "test"
        ndims = (2, 3, 4) if kind == "images" else (1,)
        arr = _parse_idx(_read_bytes(file), file, ndims)
        arrays[f"{'x' if kind == 'images' else 'y'}_{split}"] = arr
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n_x, n_y = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n_x != n_y:
            raise DataError(
                f"{folder}: {prefix}-images holds {n_x} images but {prefix}-labels holds {n_y} "
                "labels; the files do not belong together"
            )
    return _from_file_arrays(folder, arrays, name or folder.name, layout)


# --------------------------------------------------------------------------------------------
# Spec strings


def _load_embedded_digits() -> Dataset:
    resource = importlib.resources.files("edgelll") / "_data" / "digits.npz"
    if not resource.is_file():
        raise DataError("the embedded digits data is missing from this install; reinstall edgelll")
    with importlib.resources.as_file(resource) as p:
        data = load_npz(p, name="digits")
    return dataclasses.replace(data, source="embedded:digits")


def _load_path(path: str | os.PathLike[str], name: str | None, layout: str = "auto") -> Dataset:
    p = Path(path).expanduser()
    if p.is_dir():
        return load_idx_dir(p, name, layout)
    return load_npz(p, name, layout)  # also reports a missing path


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec or os.sep in spec or spec.startswith((".", "~"))
        or spec.lower().endswith((".npz", ".gz"))
    )


def load_dataset(spec: str, layout: str = "auto") -> Dataset:
    """Load a dataset from a spec: ``digits``, ``mnist=PATH``, ``fashion-mnist=PATH`` or a path.

    A path is read as an ``.npz`` file, or as a folder of IDX files when it is a folder; 4-D
    images as ``layout`` (``auto``, ``nchw`` or ``nhwc``).
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"dataset spec must be a string, got {type(spec).__name__}")
    spec = os.fspath(spec).strip()
    if not spec:
        raise ConfigError(
            "empty dataset spec; pass digits, mnist=PATH, fashion-mnist=PATH or a path"
        )
    word = spec.lower().replace("_", "-")
    if word == "digits":
        return _load_embedded_digits()
    if word in _PATH_DATASETS:
        what = "omniglot28.npz file" if word == "omniglot" else ".npz file or IDX folder"
        raise ConfigError(
            f"dataset {word!r} is not shipped and never downloaded; pass {word}=PATH "
            f"pointing at a local {what}"
        )
    if Path(spec).expanduser().exists():
        return _load_path(spec, None, layout)
    if "=" in spec:
        return _load_named(spec, layout)
    if _looks_like_path(spec):
        return _load_path(spec, None, layout)  # raises a DataError naming the missing path
    raise ConfigError(
        f"{unknown_name('dataset', spec, DATASETS)}; a path to an .npz file or IDX folder, "
        "or NAME=PATH, also works"
    )


def _load_named(spec: str, layout: str = "auto") -> Dataset:
    raw_name, _, path = spec.partition("=")
    name, path = raw_name.strip().lower().replace("_", "-"), path.strip()
    if name == "digits":
        raise ConfigError("dataset 'digits' is embedded; pass plain 'digits' without =PATH")
    if name not in _PATH_DATASETS:
        raise ConfigError(
            f"{unknown_name('dataset', raw_name.strip(), _PATH_DATASETS)} (in {spec!r}); "
            "NAME=PATH takes one of these names, or pass the bare path"
        )
    if not path:
        raise ConfigError(f"{spec!r} has no path after '='; pass {name}=PATH")
    if name == "omniglot":
        from edgelll.omniglot import load_omniglot
        return load_omniglot(path)
    return _load_path(path, name, layout)

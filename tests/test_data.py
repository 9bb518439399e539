"""Tests for edgelll.data: loaders, validation in from_arrays, and one-line user errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from edgelll.data import DATASETS, Dataset, from_arrays, load_dataset, load_idx_dir, load_npz
from edgelll.errors import ConfigError, DataError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


def _tiny(n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """A small valid uint8 image set with 3 classes, every class present in train."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 5, 4), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 3,
        "x_test": rng.integers(0, 256, (n_test, 5, 4), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 3,
    }


def _idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_idx_dir(
    folder: Path, arrays: dict[str, np.ndarray], gz: bool, dot: bool = False
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sep = "." if dot else "-"
    names = {
        "x_train": f"train-images{sep}idx3-ubyte",
        "y_train": f"train-labels{sep}idx1-ubyte",
        "x_test": f"t10k-images{sep}idx3-ubyte",
        "y_test": f"t10k-labels{sep}idx1-ubyte",
    }
    for key, stem in names.items():
        data = _idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


def _bad(**changes: object) -> dict[str, object]:
    arrays: dict[str, object] = dict(_tiny())
    arrays.update(changes)
    return arrays


# ---------------------------------------------------------------------------------------------
# Happy paths


def test_embedded_digits_loads() -> None:
    d = load_dataset("digits")
    assert isinstance(d, Dataset)
    assert (d.name, d.source) == ("digits", "embedded:digits")
    assert d.x_train.shape == (1433, 1, 8, 8) and d.x_test.shape == (364, 1, 8, 8)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert d.input_shape == (1, 8, 8)
    assert d.n_classes == 10 and d.classes == list(range(10))
    assert int(d.x_train.max()) == 16
    assert "digits" in repr(d) and len(repr(d)) < 300


def test_registry_names() -> None:
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "omniglot"}
    assert all(isinstance(v, str) and v for v in DATASETS.values())


def test_npz_round_trip_keeps_uint8(tmp_path: Path) -> None:
    arrays = _tiny()
    path = tmp_path / "tiny.npz"
    np.savez_compressed(path, **arrays)
    d = load_npz(path)
    assert (d.name, d.source) == ("tiny", str(path))
    assert d.x_train.dtype == np.uint8 and d.x_train.shape == (12, 1, 5, 4)
    np.testing.assert_array_equal(d.x_train[:, 0], arrays["x_train"])
    np.testing.assert_array_equal(d.x_test[:, 0], arrays["x_test"])
    np.testing.assert_array_equal(d.y_train, arrays["y_train"])
    assert d.y_test.dtype == np.int64
    assert load_dataset(str(path)).name == "tiny"
    assert load_dataset(f"mnist={path}").name == "mnist"


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dot", [False, True])
def test_idx_dir_round_trip(tmp_path: Path, gz: bool, dot: bool) -> None:
    arrays = _tiny(seed=1)
    _write_idx_dir(tmp_path / "raw", arrays, gz=gz, dot=dot)
    d = load_idx_dir(tmp_path / "raw")
    assert d.name == "raw" and d.x_train.dtype == np.uint8
    assert d.x_train.shape == (12, 1, 5, 4) and d.x_test.shape == (6, 1, 5, 4)
    np.testing.assert_array_equal(d.x_train[:, 0], arrays["x_train"])
    np.testing.assert_array_equal(d.x_test[:, 0], arrays["x_test"])
    np.testing.assert_array_equal(d.y_train, arrays["y_train"])
    np.testing.assert_array_equal(d.y_test, arrays["y_test"])
    assert d.x_train.flags.writeable  # torch.from_numpy warns on read-only arrays
    assert load_dataset(f"fashion-mnist={tmp_path / 'raw'}").name == "fashion-mnist"
    assert load_dataset(str(tmp_path / "raw")).name == "raw"


def test_torch_tensor_input() -> None:
    arrays = _tiny()
    t = {k: torch.from_numpy(v.astype(np.int64)) for k, v in arrays.items()}
    t["x_train"] = t["x_train"].float().requires_grad_()
    t["x_test"] = t["x_test"].to(torch.bfloat16)
    d = from_arrays(**t)
    assert d.x_train.dtype == np.float32 and d.x_train.shape == (12, 1, 5, 4)
    assert d.x_test.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.n_classes == 3


def test_from_arrays_normalises_shapes_and_dtypes() -> None:
    arrays = _tiny()
    d = from_arrays(**arrays)
    assert np.shares_memory(d.x_train, arrays["x_train"])  # uint8 is not copied
    feats = from_arrays(np.ones((4, 7)), [0, 1, 0, 1], np.zeros((2, 7)), np.array([1.0, 0.0]))
    assert feats.x_train.shape == (4, 7) and feats.x_train.dtype == np.float32
    assert feats.y_test.dtype == np.int64 and feats.classes == [0, 1]
    small_ints = from_arrays(
        np.full((2, 3), 200, np.int64), [0, 1], np.zeros((1, 3), np.int32), [1]
    )
    assert small_ints.x_train.dtype == np.uint8 and small_ints.x_test.dtype == np.uint8
    wide = from_arrays(np.full((2, 3), 300, np.int64), [0, 1], np.full((1, 3), 300, np.int16), [1])
    assert wide.x_train.dtype == np.float32 and float(wide.x_train.max()) == 300.0
    mixed = from_arrays(np.full((2, 3), 300, np.int64), [0, 1], np.zeros((1, 3), np.int64), [1])
    assert mixed.x_train.dtype == mixed.x_test.dtype == np.float32
    chw = np.zeros((2, 3, 4, 4), np.float64)
    assert from_arrays(chw, [0, 1], chw, [1, 0]).input_shape == (3, 4, 4)


# ---------------------------------------------------------------------------------------------
# Bad arrays


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"x_train": np.full((12, 5, 4), np.nan)}, r"x_train holds 240 NaN and 0 Inf"),
        ({"x_test": np.full((6, 5, 4), -np.inf)}, r"x_test holds 0 NaN and 120 Inf"),
        ({"y_train": np.arange(12) - 1}, r"y_train holds 1 negative"),
        ({"y_test": np.array([0, 1, 2, 0.5, 1, 2])}, r"y_test holds 1 non-integer"),
        ({"y_test": np.array([0, 1, 2, 3, 4, 1])}, r"never seen in y_train \(3, 4\)"),
        ({"y_train": np.arange(11) % 3}, r"x_train has 12 samples but y_train has 11"),
        ({"x_test": np.zeros((6, 4, 5), np.uint8)}, r"x_train samples have shape .*x_test"),
        ({"x_train": np.empty((12, 5, 4), dtype=object)}, r"x_train has dtype object"),
        ({"x_train": np.zeros((12, 5, 4), dtype=bool)}, r"x_train has dtype bool"),
        ({"x_test": np.zeros((6, 5, 4), dtype=complex)}, r"x_test has dtype complex"),
        ({"x_test": np.zeros((0, 5, 4), np.uint8), "y_test": []}, r"x_test is empty"),
        ({"y_train": np.zeros(12, int), "y_test": np.zeros(6, int)}, r"only one class"),
        ({"y_train": np.zeros((12, 1), int)}, r"y_train has shape \(12, 1\).*1-D"),
        ({"y_train": np.array(["a"] * 12)}, r"y_train has dtype"),
        ({"x_train": np.zeros(12)}, r"x_train has shape \(12,\)"),
        ({"y_test": None}, r"y_test is missing"),
        ({"x_train": [[1, 2], [3]]}, r"x_train cannot be turned into an array"),
    ],
)
def test_from_arrays_rejects(changes: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        from_arrays(**_bad(**changes))
    assert "\n" not in str(info.value)


def test_inf_counted_and_float32_overflow() -> None:
    x = np.zeros((12, 5, 4))
    x[0, 0, :2] = np.inf
    with pytest.raises(DataError, match="x_train holds 0 NaN and 2 Inf"):
        from_arrays(**_bad(x_train=x))
    with pytest.raises(DataError, match="too large for float32"):
        from_arrays(**_bad(x_train=np.full((12, 5, 4), 1e300)))


# ---------------------------------------------------------------------------------------------
# Bad files


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found: .*nope\.npz"):
        load_npz(tmp_path / "nope.npz")
    with pytest.raises(DataError, match="is a folder"):
        load_npz(tmp_path)
    (tmp_path / "text.npz").write_text("hello, not an archive")
    with pytest.raises(DataError, match=r"text\.npz is not an \.npz archive"):
        load_npz(tmp_path / "text.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.npz"):
        load_npz(tmp_path / "empty.npz")
    arrays = _tiny()
    np.savez(tmp_path / "part.npz", x_train=arrays["x_train"], y_train=arrays["y_train"])
    with pytest.raises(DataError, match=r"part\.npz lacks array\(s\) x_test, y_test .*holds: "):
        load_npz(tmp_path / "part.npz")
    np.save(tmp_path / "single.npy", arrays["x_train"])
    with pytest.raises(DataError, match="single .npy array"):
        load_npz(tmp_path / "single.npy")
    np.savez(tmp_path / "obj.npz", **_bad(y_test=np.array([0, "a"] * 3, dtype=object)))
    with pytest.raises(DataError, match=r"array y_test in .*obj\.npz is an object array"):
        load_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "neg.npz", **_bad(y_train=np.arange(12) - 1))
    with pytest.raises(DataError, match=r"neg\.npz: y_train holds 1 negative"):
        load_npz(tmp_path / "neg.npz")


def test_corrupt_npz(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez_compressed(good, **_tiny(n_train=300, n_test=100))
    blob = good.read_bytes()
    for i, data in enumerate([blob[: len(blob) // 2], blob[:200] + bytes(100) + blob[300:]]):
        path = tmp_path / f"bad{i}.npz"
        path.write_bytes(data)
        with pytest.raises(DataError, match=rf"bad{i}\.npz") as info:
            load_npz(path)
        assert "\n" not in str(info.value)


def _idx_dir_with(tmp_path: Path, name: str, data: bytes) -> Path:
    folder = tmp_path / "idx"
    _write_idx_dir(folder, _tiny(), gz=False)
    (folder / name).write_bytes(data)
    return folder


def test_idx_truncated(tmp_path: Path) -> None:
    data = _idx_bytes(_tiny()["x_train"])[:-7]
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated.*240.*233"):
        load_idx_dir(_idx_dir_with(tmp_path, "train-images-idx3-ubyte", data))


def test_idx_truncated_header_and_gzip(tmp_path: Path) -> None:
    folder = _idx_dir_with(tmp_path, "t10k-labels-idx1-ubyte", b"\x00\x00\x08")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is truncated"):
        load_idx_dir(folder)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    gz = gzip.compress(_idx_bytes(_tiny()["y_test"]))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gz[: len(gz) - 10])
    with pytest.raises(DataError, match=r"cannot read .*t10k-labels-idx1-ubyte\.gz"):
        load_idx_dir(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_idx_dir(folder)


def test_idx_bad_magic_type_and_extra_bytes(tmp_path: Path) -> None:
    good = _idx_bytes(_tiny()["x_train"])
    folder = _idx_dir_with(tmp_path, "train-images-idx3-ubyte", b"\x12\x34" + good[2:])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has bad magic bytes 1234"):
        load_idx_dir(folder)
    (folder / "train-images-idx3-ubyte").write_bytes(_idx_bytes(_tiny()["x_train"], 0x0D))
    with pytest.raises(DataError, match=r"IDX type 0x0D \(float32\); only 0x08"):
        load_idx_dir(folder)
    (folder / "train-images-idx3-ubyte").write_bytes(good + b"\x00\x00")
    with pytest.raises(DataError, match=r"2 bytes beyond"):
        load_idx_dir(folder)
    (folder / "train-images-idx3-ubyte").write_bytes(_idx_bytes(_tiny()["y_train"]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has 1 dimensions"):
        load_idx_dir(folder)


def test_idx_count_mismatch_and_missing(tmp_path: Path) -> None:
    folder = _idx_dir_with(tmp_path, "t10k-labels-idx1-ubyte", _idx_bytes(np.arange(5) % 3))
    with pytest.raises(DataError, match=r"t10k-images holds 6 images but t10k-labels holds 5"):
        load_idx_dir(folder)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    (folder / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match=r"lacks train-images-idx3-ubyte, t10k-labels-idx1-ubyte"):
        load_idx_dir(folder)
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_idx_dir(folder / "train-labels-idx1-ubyte")
    with pytest.raises(DataError, match="not found"):
        load_idx_dir(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# Spec strings


def test_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'mnsit'; did you mean 'mnist'.*PATH"):
        load_dataset("mnsit")
    with pytest.raises(ConfigError, match=r"never downloaded; pass mnist=PATH"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match=r"fashion-mnist=PATH"):
        load_dataset("Fashion_MNIST")
    with pytest.raises(ConfigError, match=r"no path after '='"):
        load_dataset("mnist=")
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar'"):
        load_dataset(f"cifar={tmp_path}")
    with pytest.raises(ConfigError, match=r"empty dataset spec"):
        load_dataset("  ")
    with pytest.raises(DataError, match=r"not found: .*gone\.npz"):
        load_dataset(str(tmp_path / "gone.npz"))
    with pytest.raises(DataError, match=r"not found: .*gone"):
        load_dataset(f"mnist={tmp_path / 'gone'}")


def test_shared_mnist() -> None:
    if not SHARED_MNIST.is_file():
        pytest.skip(f"{SHARED_MNIST} is absent")
    d = load_dataset(f"mnist={SHARED_MNIST}")
    assert d.name == "mnist"
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.x_train.dtype == np.uint8
    counts = np.bincount(d.y_train, minlength=10)
    assert counts[0] == 5923 and counts[1] == 6742
    assert counts.sum() == 60000 and d.n_classes == 10

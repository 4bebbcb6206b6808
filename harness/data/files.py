"""File-backed data sets read from a folder the user names (``--data-dir``).

A file under a known name with its published SHA-256 is ``verified``; one with other
contents is the user's own data set in that format: it is used, and the record says
``user data`` with its SHA-256 (``--strict-data`` refuses it instead). A file we know
no checksum for is used and said to be unverified. The checks that would fail a cell
run in ``preflight``, in the driver, before any cell starts.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import (
    DataError,
    Dataset,
    DatasetInfo,
    read_once,
    register,
    stratified_split,
    text,
)
from harness.data.bundled import standardize

SHA256 = {
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "diabetes.csv.gz": "398214d0f6b7f4a722f598d8e424f28bc078abbd16ebdeea0f8e264492325aa4",
    "names_train.csv.gz": "49b4bf41dce5bfeac989b46ca37cf7baccd9a0d2a855df82f86de67a9376268f",
    "names_test.csv.gz": "57d7758db533a42c99d513b2341a7e7b0f55c1e0e7d233b1ef6a4fa2f1adf753",
}
# a file's status in a data set's info["files"]; its checksum is in info["sha256"]
VERIFIED, USER_DATA, UNVERIFIED = "verified", "user data", "unverified (no known checksum)"
MNIST_HINT = (
    "MNIST needs the IDX files t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
    "(and, for the full layout, train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz), "
    "gzipped or not, as published by the MNIST database, in that folder"
)
DIABETES_HINT = (
    "the diabetes task needs diabetes.csv.gz (PyTorchZeroToAll's Pima diabetes: 8 features "
    "scaled to [-1, 1] and a 0/1 label, no header) in that folder"
)
NAMES_HINT = (
    "the names task needs names_train.csv.gz and names_test.csv.gz (PyTorchZeroToAll's "
    "surname,country files, 18 countries) in that folder"
)
MNIST_SIZE = 28
DIABETES_FEATURES = 8
DIABETES_ROWS = f"rows of {DIABETES_FEATURES} numbers and a 0/1 label, comma-separated, no header"
NAMES_ROWS = "rows of two fields, surname,country"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified(path: Path, strict: bool = False) -> str:
    """``VERIFIED`` for a known file with its published checksum, ``USER_DATA`` for a known
    name with other contents (a DataError when ``strict``), else ``UNVERIFIED``."""
    want = SHA256.get(path.name)
    if want is None:
        return UNVERIFIED
    got = read_once("sha256", path, sha256)
    if got == want:
        return VERIFIED
    if strict:
        raise DataError(
            f"{path} has SHA-256 {got}, not the published {path.name}'s {want}, and "
            "--strict-data takes only the published file: drop --strict-data to use it as "
            "your own data set, or download the published file again"
        )
    return USER_DATA


def checksums(paths: list[Path], strict: bool = False) -> dict[str, dict[str, str]]:
    """A data set's ``files`` (each file's status) and ``sha256`` info entries."""
    return {
        "files": {p.name: verified(p, strict) for p in paths},
        "sha256": {p.name: read_once("sha256", p, sha256) for p in paths},
    }


def find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _raw(path: Path) -> bytes:
    """A file's bytes, unpacked when its name ends in .gz."""
    packed = path.suffix == ".gz"
    try:
        if packed:
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        what = "unpacked as gzip" if packed else "read"
        raise DataError(
            f"{path} cannot be {what} ({err}); give the file whole, gzipped with a .gz name "
            "or unpacked without one"
        ) from None


def _text(path: Path) -> str:
    raw = _raw(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "give a UTF-8 CSV file"
        ) from None


def _parse_idx(path: Path) -> np.ndarray:
    raw = _raw(path)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        start = raw[:4].hex(" ") or "nothing"
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes (it starts with {start}); MNIST's "
            "IDX files start 00 00 08 and their number of dimensions"
        )
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: it ends inside its header of {raw[3]} dimensions; give the "
            "whole file"
        )
    dims = [int(d) for d in np.frombuffer(raw, dtype=">u4", count=raw[3], offset=4)]
    want, got = math.prod(dims), len(raw) - header
    shape = " x ".join(map(str, dims))
    if got < want:
        raise DataError(
            f"{path} is truncated: its header promises {want} values ({shape}), the file holds "
            f"{got}; give the whole file"
        )
    if got > want:
        raise DataError(
            f"{path} has {got - want} bytes after the {want} values its header promises "
            f"({shape}); an IDX file ends with its data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, ndim: int | None = None, what: str = "the array") -> np.ndarray:
    """An IDX file (the MNIST format): big-endian dims, then uint8 data; ``ndim`` the
    number of dimensions ``what`` must have."""
    arr = read_once("idx", path, _parse_idx)
    if ndim is not None and arr.ndim != ndim:
        raise DataError(
            f"{path} holds an IDX array of {arr.ndim} dimensions {list(arr.shape)}; {what} "
            f"must have {ndim}"
        )
    return arr


def _splits_in_two(y: np.ndarray, test_fraction: float, path: Path) -> None:
    """A set that the loader splits must leave samples on both sides."""
    tr, te = stratified_split(y, test_fraction, 0)  # the sizes do not depend on the seed
    if len(tr) == 0 or len(te) == 0:
        raise DataError(
            f"{path}: its {len(y)} samples split at test_fraction {test_fraction} leave "
            f"{len(tr)} to train and {len(te)} to test; give more samples"
        )


def mnist_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """An images file and its labels file, read and checked against each other."""
    x = read_idx(images, 3, f"images ([count, {MNIST_SIZE}, {MNIST_SIZE}])")
    if x.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise DataError(
            f"{images} holds images of {x.shape[1]}x{x.shape[2]} pixels; the mnist data set "
            f"takes MNIST's {MNIST_SIZE}x{MNIST_SIZE}"
        )
    if len(x) == 0:
        raise DataError(f"{images} holds no images; give at least one per class")
    y = read_idx(labels, 1, "labels ([count])")
    if len(y) != len(x):
        raise DataError(
            f"{labels} has {len(y)} labels for the {len(x)} images of {images.name}; the two "
            "files must hold one label per image, in order"
        )
    if y.max() > 9:
        raise DataError(
            f"{labels} has label {int(y.max())}; the mnist data set takes the digits 0 to 9"
        )
    return x, y


def _mnist_paths(directory: Path) -> tuple[Path, Path, Path | None, Path | None]:
    t_img = find(directory, "t10k-images-idx3-ubyte")
    t_lab = find(directory, "t10k-labels-idx1-ubyte")
    if t_img is None or t_lab is None:
        raise DataError(f"no MNIST test files in {directory}: {MNIST_HINT}")
    tr_img = find(directory, "train-images-idx3-ubyte")
    tr_lab = find(directory, "train-labels-idx1-ubyte")
    if tr_img is None or tr_lab is None:
        tr_img = tr_lab = None  # a half of the training pair is not used
    return t_img, t_lab, tr_img, tr_lab


def check_mnist(
    directory: Path, params: dict[str, Any], test_fraction: float, strict: bool = False
) -> None:
    t_img, t_lab, tr_img, tr_lab = _mnist_paths(directory)
    if strict:
        checksums([p for p in (tr_img, tr_lab, t_img, t_lab) if p is not None], strict)
    _, y = mnist_pair(t_img, t_lab)
    if tr_img is not None and tr_lab is not None:
        mnist_pair(tr_img, tr_lab)
    else:
        _splits_in_two(y, test_fraction, t_lab)


def _read_diabetes(path: Path) -> np.ndarray:
    rows = []
    for i, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != DIABETES_FEATURES + 1:
            raise DataError(f"{path}: line {i} has {len(fields)} fields; expected {DIABETES_ROWS}")
        try:
            row = [float(v) for v in fields]
        except ValueError:
            raise DataError(
                f"{path}: line {i} holds a field that is not a number ({line[:60]!r}); "
                f"expected {DIABETES_ROWS}"
            ) from None
        if not all(math.isfinite(v) for v in row) or row[-1] not in (0.0, 1.0):
            raise DataError(
                f"{path}: line {i} has a value that is not finite or a label that is not 0 or "
                f"1 ({line[:60]!r}); expected {DIABETES_ROWS}"
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{path} has no rows; expected {DIABETES_ROWS}")
    return np.array(rows, dtype=np.float64)


def check_diabetes(
    directory: Path, params: dict[str, Any], test_fraction: float, strict: bool = False
) -> None:
    path = find(directory, "diabetes.csv")
    if path is None:
        raise DataError(f"no diabetes.csv.gz in {directory}: {DIABETES_HINT}")
    if strict:
        checksums([path], strict)
    table = read_once("diabetes", path, _read_diabetes)
    _splits_in_two(table[:, -1].astype(np.int64), test_fraction, path)


def _read_names(path: Path) -> list[tuple[str, str]]:
    try:
        rows = list(csv.reader(io.StringIO(_text(path), newline="")))
    except csv.Error as err:
        raise DataError(f"{path} is not a CSV file ({err}); expected {NAMES_ROWS}") from None
    out = []
    for i, row in enumerate(rows, 1):
        if not row:
            continue
        if len(row) != 2 or not row[0] or not row[1]:
            raise DataError(
                f"{path}: row {i} is {','.join(row)[:60]!r}; expected {NAMES_ROWS}, neither empty"
            )
        out.append((row[0], row[1]))
    if not out:
        raise DataError(f"{path} has no rows; expected {NAMES_ROWS}")
    return out


def _names_paths(directory: Path) -> tuple[Path, Path]:
    train, test = find(directory, "names_train.csv"), find(directory, "names_test.csv")
    if train is None or test is None:
        raise DataError(f"no names_train.csv.gz / names_test.csv.gz in {directory}: {NAMES_HINT}")
    return train, test


def _countries(train: list[tuple[str, str]], test: list[tuple[str, str]], path: Path):
    """Countries in sorted order; every test country must be a training one."""
    countries = sorted({c for _, c in train})
    unknown = sorted({c for _, c in test} - set(countries))
    if unknown:
        raise DataError(
            f"{path}: countries {unknown} are not in the training file; the test file may "
            "hold only countries the training file has"
        )
    return countries


def check_names(
    directory: Path, params: dict[str, Any], test_fraction: float, strict: bool = False
) -> None:
    paths = _names_paths(directory)
    if strict:
        checksums(list(paths), strict)
    train, test = (read_once("names", p, _read_names) for p in paths)
    _countries(train, test, paths[1])


def names(
    params: dict[str, Any], test_fraction: float, seed: int, directory: Path | None
) -> Dataset:
    """The course's surname -> country files, their own train/test split; countries
    numbered in sorted order, names as character codes padded to ``max_len``."""
    assert directory is not None
    paths = _names_paths(directory)
    checks = checksums(list(paths))
    train, test = (read_once("names", p, _read_names) for p in paths)
    countries = _countries(train, test, paths[1])
    index = {c: i for i, c in enumerate(countries)}
    max_len = int(params.get("max_len", 20))
    x_tr, cut_tr = text.pad([text.char_ids(n) for n, _ in train], max_len)
    x_te, cut_te = text.pad([text.char_ids(n) for n, _ in test], max_len)
    y_tr = np.array([index[c] for _, c in train], dtype=np.int64)
    y_te = np.array([index[c] for _, c in test], dtype=np.int64)
    info = {
        "source": f"names files in {directory}",
        **checks,
        "split": f"the files' own split: {len(y_tr)} train / {len(y_te)} test",
        "classes": countries,
        "chance": text.chance(y_te, len(countries)),
        "truncated": int(cut_tr + cut_te),
    }
    return Dataset(x_tr, y_tr, x_te, y_te, len(countries), info)


def block_mean(images: np.ndarray, size: int) -> np.ndarray:
    """``[n, 28, 28]`` images averaged down to ``size`` x ``size``: the centre
    ``k*size`` square (``k`` the largest whole factor that fits) in k x k blocks,
    as scikit-learn's 8x8 digits were made from their 32x32 bitmaps."""
    n, side = images.shape[0], images.shape[1]
    k = side // size
    if k < 1:
        raise DataError(f"mnist: size = {size} is larger than the images' {side} pixels")
    start = (side - k * size) // 2
    crop = images[:, start : start + k * size, start : start + k * size]
    return crop.reshape(n, size, k, size, k).mean(axis=(2, 4))


def _mnist_size(params: dict[str, Any]) -> int:
    size = params.get("size", MNIST_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MNIST_SIZE:
        raise DataError(
            f"mnist: size must be a whole number of pixels from 1 to {MNIST_SIZE}, not {size!r}"
        )
    return size


def mnist(
    params: dict[str, Any], test_fraction: float, seed: int, directory: Path | None
) -> Dataset:
    """MNIST from IDX files: train + t10k when both are there, else t10k split in two.
    ``size`` (default 28) averages the images down, for a model made for 8x8 digits."""
    assert directory is not None
    t_img, t_lab, tr_img, tr_lab = _mnist_paths(directory)
    checks = checksums([p for p in (tr_img, tr_lab, t_img, t_lab) if p is not None])
    x_t, y_t = mnist_pair(t_img, t_lab)
    x_t, y_t = x_t.astype(np.float64) / 255.0, y_t.astype(np.int64)
    if tr_img is not None and tr_lab is not None:
        x_tr, y_tr = mnist_pair(tr_img, tr_lab)
        x_tr, y_tr, x_te, y_te = x_tr / 255.0, y_tr.astype(np.int64), x_t, y_t
        split = f"the official split: {len(y_tr)} train / {len(y_te)} test"
    else:
        tr, te = stratified_split(y_t, test_fraction, seed)
        x_tr, y_tr, x_te, y_te = x_t[tr], y_t[tr], x_t[te], y_t[te]
        split = (
            f"only the 10k test set was found: split stratified into {len(tr)} train / "
            f"{len(te)} held-back test, seed {seed}"
        )
    size = _mnist_size(params)
    if size != MNIST_SIZE:
        x_tr, x_te = block_mean(x_tr, size), block_mean(x_te, size)
        split += f"; averaged down to {size}x{size}"
    x_tr, x_te = standardize(x_tr, x_te)
    info = {
        "source": f"MNIST IDX files in {directory}",
        **checks,
        "split": split,
        "chance": float(np.bincount(y_te).max() / len(y_te)),
    }
    return Dataset(x_tr[..., None], y_tr, x_te[..., None], y_te, 10, info)


def diabetes(
    params: dict[str, Any], test_fraction: float, seed: int, directory: Path | None
) -> Dataset:
    """The course's Pima diabetes CSV (8 features in [-1, 1], label 0/1)."""
    assert directory is not None
    path = find(directory, "diabetes.csv")
    if path is None:
        raise DataError(f"no diabetes.csv.gz in {directory}: {DIABETES_HINT}")
    checks = checksums([path])
    table = read_once("diabetes", path, _read_diabetes)
    x, y = table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)
    tr, te = stratified_split(y, test_fraction, seed)
    info = {
        "source": f"{path}",
        **checks,
        "split": f"stratified {len(tr)} train / {len(te)} test, seed {seed}",
        "chance": float(np.bincount(y[te]).max() / len(te)),
    }
    return Dataset(x[tr], y[tr], x[te], y[te], 2, info)


register(
    DatasetInfo(
        "mnist", mnist, lambda p: (_mnist_size(p),) * 2 + (1,), MNIST_HINT, True, check_mnist
    )
)
register(
    DatasetInfo(
        "diabetes", diabetes, lambda p: (DIABETES_FEATURES,), DIABETES_HINT, True, check_diabetes
    )
)
register(DatasetInfo("names", names, text.seq_shape(20), NAMES_HINT, True, check_names))

"""File-backed data sets read from a folder the user names (``--data-dir``).

Known files are checked against their published SHA-256; a file we know no
checksum for is used and said to be unverified in the record.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import DataError, Dataset, DatasetInfo, register, stratified_split, text
from harness.data.bundled import standardize

SHA256 = {
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "diabetes.csv.gz": "398214d0f6b7f4a722f598d8e424f28bc078abbd16ebdeea0f8e264492325aa4",
    "names_train.csv.gz": "49b4bf41dce5bfeac989b46ca37cf7baccd9a0d2a855df82f86de67a9376268f",
    "names_test.csv.gz": "57d7758db533a42c99d513b2341a7e7b0f55c1e0e7d233b1ef6a4fa2f1adf753",
}
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


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified(path: Path) -> str:
    """Check a file's SHA-256 when we know it; returns 'verified' or 'unverified'."""
    want = SHA256.get(path.name)
    if want is None:
        return "unverified (no known checksum)"
    got = sha256(path)
    if got != want:
        raise DataError(
            f"{path} has SHA-256 {got}, expected {want}: the file is damaged or a different "
            "version; download it again"
        )
    return "verified"


def find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated: expected {int(np.prod(dims))} values, got {data.size}"
        )
    return data.reshape(dims)


def check_mnist(directory: Path) -> None:
    if (
        find(directory, "t10k-images-idx3-ubyte") is None
        or find(directory, "t10k-labels-idx1-ubyte") is None
    ):
        raise DataError(f"no MNIST test files in {directory}: {MNIST_HINT}")


def check_diabetes(directory: Path) -> None:
    if find(directory, "diabetes.csv") is None:
        raise DataError(f"no diabetes.csv.gz in {directory}: {DIABETES_HINT}")


def check_names(directory: Path) -> None:
    if find(directory, "names_train.csv") is None or find(directory, "names_test.csv") is None:
        raise DataError(f"no names_train.csv.gz / names_test.csv.gz in {directory}: {NAMES_HINT}")


def _read_names(path: Path) -> list[tuple[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows or any(len(r) != 2 for r in rows):
        raise DataError(f"{path}: expected rows of two fields, surname,country")
    return [(r[0], r[1]) for r in rows]


def names(
    params: dict[str, Any], test_fraction: float, seed: int, directory: Path | None
) -> Dataset:
    """The course's surname -> country files, their own train/test split; countries
    numbered in sorted order, names as character codes padded to ``max_len``."""
    assert directory is not None
    check_names(directory)
    paths = [find(directory, "names_train.csv"), find(directory, "names_test.csv")]
    checks = {p.name: verified(p) for p in paths}
    train, test = (_read_names(p) for p in paths)
    countries = sorted({c for _, c in train})
    index = {c: i for i, c in enumerate(countries)}
    unknown = sorted({c for _, c in test} - set(index))
    if unknown:
        raise DataError(f"{paths[1]}: countries {unknown} are not in the training file")
    max_len = int(params.get("max_len", 20))
    x_tr, cut_tr = text.pad([text.char_ids(n) for n, _ in train], max_len)
    x_te, cut_te = text.pad([text.char_ids(n) for n, _ in test], max_len)
    y_tr = np.array([index[c] for _, c in train], dtype=np.int64)
    y_te = np.array([index[c] for _, c in test], dtype=np.int64)
    info = {
        "source": f"names files in {directory}",
        "files": checks,
        "split": f"the files' own split: {len(y_tr)} train / {len(y_te)} test",
        "classes": countries,
        "chance": text.chance(y_te, len(countries)),
        "truncated": int(cut_tr + cut_te),
    }
    return Dataset(x_tr, y_tr, x_te, y_te, len(countries), info)


MNIST_SIZE = 28


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
    check_mnist(directory)
    t_img = find(directory, "t10k-images-idx3-ubyte")
    t_lab = find(directory, "t10k-labels-idx1-ubyte")
    tr_img = find(directory, "train-images-idx3-ubyte")
    tr_lab = find(directory, "train-labels-idx1-ubyte")
    used = [p for p in (tr_img, tr_lab, t_img, t_lab) if p is not None]
    checks = {p.name: verified(p) for p in used}
    x_t = read_idx(t_img).astype(np.float64) / 255.0
    y_t = read_idx(t_lab).astype(np.int64)
    if tr_img is not None and tr_lab is not None:
        x_tr, y_tr, x_te, y_te = (
            read_idx(tr_img) / 255.0,
            read_idx(tr_lab).astype(np.int64),
            x_t,
            y_t,
        )
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
        "files": checks,
        "split": split,
        "chance": float(np.bincount(y_te).max() / len(y_te)),
    }
    return Dataset(x_tr[..., None], y_tr, x_te[..., None], y_te, 10, info)


def diabetes(
    params: dict[str, Any], test_fraction: float, seed: int, directory: Path | None
) -> Dataset:
    """The course's Pima diabetes CSV (8 features in [-1, 1], label 0/1)."""
    assert directory is not None
    check_diabetes(directory)
    path = find(directory, "diabetes.csv")
    check = verified(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    x, y = table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)
    tr, te = stratified_split(y, test_fraction, seed)
    info = {
        "source": f"{path}",
        "files": {path.name: check},
        "split": f"stratified {len(tr)} train / {len(te)} test, seed {seed}",
        "chance": float(np.bincount(y[te]).max() / len(te)),
    }
    return Dataset(x[tr], y[tr], x[te], y[te], 2, info)


register(
    DatasetInfo(
        "mnist", mnist, lambda p: (_mnist_size(p),) * 2 + (1,), MNIST_HINT, True, check_mnist
    )
)
register(DatasetInfo("diabetes", diabetes, lambda p: (8,), DIABETES_HINT, True, check_diabetes))
register(DatasetInfo("names", names, text.seq_shape(20), NAMES_HINT, True, check_names))

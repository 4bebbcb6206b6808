"""Real data sets that ship inside scikit-learn, so they work offline."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import Dataset, DatasetInfo, register, stratified_split


def _sklearn_table(filename: str, skip_header: int) -> np.ndarray | None:
    """A CSV that ships inside scikit-learn, read without importing scikit-learn
    (its import costs about a second in every cell's process); None if not found."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / filename
    if not path.is_file():
        return None
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", skiprows=skip_header)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images [1797, 8, 8] in 0..16 and labels."""
    table = _sklearn_table("digits.csv.gz", 0)
    if table is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images.astype(np.float64), d.target.astype(np.int64)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load_breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's breast cancer set: features [569, 30] and labels (1 = benign)."""
    table = _sklearn_table("breast_cancer.csv", 1)
    if table is None:
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
        return d.data, d.target.astype(np.int64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation from n_in to n_out samples (pixel centres aligned)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def to_mnist_layout(images: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """Upsample square images bilinearly to ``box`` pixels and centre them in a
    ``size`` canvas, as MNIST centres its 20x20 digits in 28x28."""
    m = _interp_matrix(box, images.shape[1])
    up = np.einsum("ij,njk,lk->nil", m, images, m)
    pad = (size - box) // 2
    return np.pad(up, ((0, 0), (pad, size - box - pad), (pad, size - box - pad)))


def standardize(train: np.ndarray, test: np.ndarray, axis=None) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale with the training part's statistics only."""
    mean = train.mean(axis=axis, keepdims=axis is not None)
    std = train.std(axis=axis, keepdims=axis is not None) + 1e-8
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def _images(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, info: dict) -> Dataset:
    tr, te = stratified_split(y, test_fraction, seed)
    x_tr, x_te = standardize(x[tr], x[te])  # one mean/std for all pixels, like MNIST's Normalize
    info = {
        **info,
        "split": f"stratified {len(tr)} train / {len(te)} test, seed {seed}",
        "chance": float(np.bincount(y[te]).max() / len(te)),
    }
    return Dataset(x_tr[..., None], y[tr], x_te[..., None], y[te], 10, info)


def digits(params: dict[str, Any], test_fraction: float, seed: int, _: Path | None) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8."""
    images, labels = load_digits_arrays()
    return _images(images / 16.0, labels, test_fraction, seed, {"source": "sklearn digits 8x8"})


def digits28(params: dict[str, Any], test_fraction: float, seed: int, _: Path | None) -> Dataset:
    """The same digits upsampled to MNIST's 28x28 layout, so the course's LeNet,
    Inception and ResNet topologies run unchanged."""
    images, labels = load_digits_arrays()
    info = {"source": "sklearn digits, bilinear 8x8 -> 20x20 centred in 28x28"}
    return _images(to_mnist_layout(images / 16.0), labels, test_fraction, seed, info)


def breast_cancer(
    params: dict[str, Any], test_fraction: float, seed: int, _: Path | None
) -> Dataset:
    """scikit-learn's Wisconsin breast cancer set: 569 samples, 30 features (1 = benign)."""
    features, y = load_breast_cancer_arrays()
    tr, te = stratified_split(y, test_fraction, seed)
    x_tr, x_te = standardize(features[tr], features[te], axis=0)
    info = {
        "source": "sklearn breast_cancer",
        "chance": float(np.bincount(y[te]).max() / len(te)),
        "split": f"stratified {len(tr)} train / {len(te)} test, seed {seed}",
    }
    return Dataset(x_tr, y[tr], x_te, y[te], 2, info)


register(DatasetInfo("digits", digits, lambda p: (8, 8, 1), "scikit-learn digits 8x8"))
register(DatasetInfo("digits28", digits28, lambda p: (28, 28, 1), "scikit-learn digits as 28x28"))
register(DatasetInfo("breast_cancer", breast_cancer, lambda p: (30,), "scikit-learn breast cancer"))

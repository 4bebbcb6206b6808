"""Data sets generated from the spec's seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.data import Dataset, DatasetInfo, register


def house_prices(
    params: dict[str, Any], test_fraction: float, seed: int, _: Path | None
) -> Dataset:
    """y = x + N(0, noise) on x = linspace(0, 50, n); the last points are the test set,
    as in the course (it extrapolates rather than interpolates)."""
    n = int(params.get("n", 50))
    noise = float(params.get("noise", 1.0))
    x = np.linspace(0.0, 50.0, n, dtype=np.float64)
    y = x + noise * np.random.default_rng(seed).standard_normal(n)
    n_test = max(1, int(round(n * test_fraction)))
    x = x.astype(np.float32).reshape(n, 1)
    y = y.astype(np.float32).reshape(n, 1)
    info = {
        "split": f"last {n_test} of {n} points are the test set",
        "true_slope": 1.0,
        "true_intercept": 0.0,
    }
    return Dataset(x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:], None, info)


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0], dtype=np.int64)


def xor(params: dict[str, Any], test_fraction: float, seed: int, _: Path | None) -> Dataset:
    """The four XOR points, repeated ``repeat`` times for training; tested on the four."""
    repeat = int(params.get("repeat", 64))
    info = {"split": f"train: the 4 points x {repeat}; test: the 4 points", "chance": 0.5}
    return Dataset(np.tile(XOR_X, (repeat, 1)), np.tile(XOR_Y, repeat), XOR_X, XOR_Y, 2, info)


register(
    DatasetInfo(
        "house_prices", house_prices, lambda p: (1,), "the course's house-price line, generated"
    )
)
register(DatasetInfo("xor", xor, lambda p: (2,), "the four XOR points"))


def gaussian_ring(
    params: dict[str, Any], test_fraction: float, seed: int, _: Path | None
) -> Dataset:
    """The GAN benchmark's 2-d mixture: ``modes`` Gaussians of std ``sigma`` evenly on
    a circle of ``radius``; the label is the mode each point came from."""
    k, n = int(params.get("modes", 8)), int(params.get("n", 4000))
    radius, sigma = float(params.get("radius", 2.0)), float(params.get("sigma", 0.05))
    angles = 2 * np.pi * np.arange(k) / k
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rng = np.random.default_rng([seed, 29])
    y = rng.integers(0, k, size=n)
    x = (centres[y] + sigma * rng.standard_normal((n, 2))).astype(np.float32)
    n_test = int(round(n * test_fraction))
    info = {
        "split": f"{n - n_test} train / {n_test} test points, seed {seed}",
        "modes": {"centres": centres.tolist(), "sigma": sigma, "min_share": 0.25 / k},
    }
    return Dataset(x[n_test:], y[n_test:], x[:n_test], y[:n_test], k, info)


register(
    DatasetInfo(
        "gaussian_ring", gaussian_ring, lambda p: (2,), "a ring of 2-d Gaussians (GAN benchmark)"
    )
)

"""Test-set losses and metrics, computed in numpy (float64) from each backend's
outputs, so every framework is scored by the same code."""

from __future__ import annotations

import numpy as np


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def loss(name: str, out: np.ndarray, y: np.ndarray) -> float:
    """Mean loss of logits/outputs ``out`` against targets ``y`` (see spec.py)."""
    out = out.astype(np.float64)
    if name == "mse":
        return float(np.mean((out - y.reshape(out.shape)) ** 2))
    if name == "binary_cross_entropy":
        z, t = out.reshape(-1), y.reshape(-1).astype(np.float64)
        # log(1 + exp(-|z|)) form: no overflow for large logits
        return float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))
    if name == "softmax_cross_entropy":
        out = out.reshape(-1, out.shape[-1])  # one prediction per step counts as a sample
        labels = y.reshape(-1).astype(int)
        return float(np.mean(_logsumexp(out) - out[np.arange(len(out)), labels]))
    raise ValueError(f"unknown loss {name!r}")


def accuracy(name: str, out: np.ndarray, y: np.ndarray) -> float:
    if name == "binary_cross_entropy":
        return float(np.mean((out.reshape(-1) > 0) == (y.reshape(-1) > 0.5)))
    return float(np.mean(out.argmax(axis=-1).reshape(-1) == y.reshape(-1).astype(int)))


def evaluate(
    loss_name: str, metrics: tuple[str, ...], out: np.ndarray, y: np.ndarray
) -> dict[str, float]:
    """The spec's metrics (see spec.METRICS) on one set of outputs."""
    values: dict[str, float] = {}
    for m in metrics:
        if m in ("loss", "mse"):
            values[m] = loss(loss_name, out, y)
        elif m == "accuracy":
            values[m] = accuracy(loss_name, out, y)
    return values


HIGHER_IS_BETTER = ("accuracy", "modes_covered", "quality")


def reached(metric: str, value: float, target: float) -> bool:
    """Whether ``value`` meets a target: accuracies and sample quality from above,
    losses and distances from below."""
    return value >= target if metric in HIGHER_IS_BETTER else value <= target


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """2 E|A-B| - E|A-A'| - E|B-B'| (Szekely): 0 when the two samples come from the
    same distribution, larger the further apart they are."""

    def mean_dist(p, q):
        return float(np.sqrt(((p[:, None, :] - q[None, :, :]) ** 2).sum(-1)).mean())

    a, b = a.astype(np.float64), b.astype(np.float64)
    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


def gan_metrics(samples: np.ndarray, real: np.ndarray, modes: dict) -> dict[str, float]:
    """A generator's samples against a mixture of Gaussians with known ``centres``
    and ``sigma``: a sample is of good *quality* when it lies within 3 sigma of a
    centre; a mode is *covered* when at least ``min_share`` of the samples are good
    ones near it (VEEGAN's protocol); the *energy distance* compares the samples with
    real test samples."""
    centres = np.asarray(modes["centres"], dtype=np.float64)
    s = samples.astype(np.float64)
    dist = np.sqrt(((s[:, None, :] - centres[None]) ** 2).sum(-1))
    nearest, good = dist.argmin(axis=1), dist.min(axis=1) < 3 * modes["sigma"]
    counts = np.bincount(nearest[good], minlength=len(centres))
    if not np.all(np.isfinite(s)):
        return {"modes_covered": 0.0, "quality": 0.0, "energy_distance": float("inf")}
    return {
        "modes_covered": float((counts >= modes["min_share"] * len(s)).sum()),
        "quality": float(good.mean()),
        "energy_distance": energy_distance(s, real),
    }


def mean_predictor_mse(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Test MSE of always predicting the mean training target (for an autoencoder:
    the mean image), the bar a model has to clear."""
    mean = y_train.astype(np.float64).mean(axis=0)
    return float(np.mean((y_test.astype(np.float64) - mean) ** 2))

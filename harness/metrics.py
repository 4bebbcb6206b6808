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


def reached(metric: str, value: float, target: float) -> bool:
    """Whether ``value`` meets a target: accuracies from above, losses from below."""
    return value >= target if metric == "accuracy" else value <= target


def mean_predictor_mse(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Test MSE of always predicting the mean training target (for an autoencoder:
    the mean image), the bar a model has to clear."""
    mean = y_train.astype(np.float64).mean(axis=0)
    return float(np.mean((y_test.astype(np.float64) - mean) ** 2))

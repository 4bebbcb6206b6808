"""Epoch order and minibatches: drawn by the harness, identical for every framework."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from harness.backend import Batch
from harness.spec import Shape, TaskSpec, output_shape


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of epoch ``epoch``: depends only on the seed and the epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray, drop_last: bool
) -> Iterator[Batch]:
    """Minibatches of ``x, y`` in ``order``; ``drop_last`` keeps every shape equal."""
    n = len(order)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield Batch(x[idx], y[idx])


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def padded_chunks(x: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """``x`` in chunks of exactly ``size`` rows (the last padded by repeating its
    first row), with the number of real rows: one shape, so no graph retraces."""
    for start in range(0, len(x), size):
        chunk = x[start : start + size]
        real = len(chunk)
        if real < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], size - real, axis=0)])
        yield chunk, real


def random_batch(
    spec: TaskSpec, input_shape: Shape, n: int, dtype: str = "float32", seed: int = 0
) -> Batch:
    """A fixed random batch of the shapes and dtypes ``spec`` trains on (for tests,
    explain and the contract): normal inputs, or token ids each padded after a
    random length; class ids ([n], or [n, steps] per step), 0/1 or normal targets,
    the input itself for an autoencoder; a gan's batch has noise ``z`` and no ``y``."""
    rng = np.random.default_rng(seed)
    if spec.recipe.kind == "gan":  # real samples and the generator's noise
        latent = spec.model.input_shape[0]  # type: ignore[index]
        x = rng.normal(size=(n, *input_shape)).astype(dtype)
        return Batch(x, None, rng.normal(size=(n, latent)).astype(dtype))
    first = spec.model.layers[0]
    if first.type == "embedding":
        x = rng.integers(1, first.vocab, size=(n, *input_shape)).astype(np.int32)
        lengths = rng.integers(1, input_shape[0] + 1, size=n)
        x[np.arange(input_shape[0]) >= lengths[:, None]] = 0
    else:
        x = rng.normal(size=(n, *input_shape)).astype(dtype)
    out = output_shape(spec.model, input_shape)
    if spec.recipe.kind == "autoencoder":
        y = x.reshape(n, -1)
    elif spec.recipe.loss == "softmax_cross_entropy":
        y = rng.integers(0, out[-1], size=(n, *out[:-1])).astype(np.int32)
    elif spec.recipe.loss == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(n, 1)).astype(dtype)
    else:
        y = rng.normal(size=(n, out[-1])).astype(dtype)
    return Batch(x, y)

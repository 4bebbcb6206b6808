"""Epoch order and minibatches: drawn by the harness, identical for every framework."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from harness.backend import Batch


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

"""Image augmentation drawn by the harness, so every framework sees the same batches."""

from __future__ import annotations

import numpy as np

from harness.spec import Augment


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate an HWC image by (dy, dx) pixels; what moves in is zero."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = image[ys, xs]
    return out


def augment(x: np.ndarray, spec: Augment, rng: np.random.Generator) -> np.ndarray:
    """A randomly shifted and/or mirrored copy of a batch of NHWC images."""
    if x.ndim != 4:
        raise ValueError(f"augment works on NHWC image batches, not shape {list(x.shape)}")
    out = x.copy()
    for i in range(len(x)):
        if spec.shift:
            dy, dx = rng.integers(-spec.shift, spec.shift + 1, size=2)
            out[i] = shift(out[i], int(dy), int(dx))
        if spec.flip and rng.random() < 0.5:
            out[i] = out[i][:, ::-1]
    return out

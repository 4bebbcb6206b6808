"""Canonical initial weights, drawn in numpy from the spec's seed.

Every backend loads these, so all frameworks start from the same point.
The scheme is PyTorch's default for Linear/Conv layers: kernel and bias
uniform in +-1/sqrt(fan_in). It is what the course's hyper-parameters were
tuned with. (``--init native`` skips this and keeps each framework's own
initializers, which differ: Keras uses Glorot-uniform kernels and zero biases,
Flax LeCun-normal kernels and zero biases.)
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from harness.backend import Weights
from harness.spec import Shape, TaskSpec, param_shapes


def _stream(seed: int, name: str) -> np.random.Generator:
    # one stream per parameter name: adding a layer does not shift the others
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def fan_in(name: str, shape: Shape, shapes: dict[str, Shape]) -> int:
    """Fan-in of a parameter; a bias takes its layer's kernel fan-in."""
    if name.endswith(".bias"):
        kernel = shapes.get(name[: -len(".bias")] + ".kernel")
        return math.prod(kernel[:-1]) if kernel else 1
    return math.prod(shape[:-1])


def canonical_weights(spec: TaskSpec, input_shape: Shape, dtype: str = "float32") -> Weights:
    """Initial parameters for ``spec``, canonical names and layouts."""
    shapes = param_shapes(spec.model, input_shape)
    weights: Weights = {}
    for name, shape in shapes.items():
        bound = 1.0 / math.sqrt(fan_in(name, shape, shapes))
        draw = _stream(spec.recipe.seed, name).uniform(-bound, bound, size=shape)
        weights[name] = draw.astype(dtype)
    return weights

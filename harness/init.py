"""Canonical initial weights, drawn in numpy from the spec's seed.

Every backend loads these, so all frameworks start from the same point.
The scheme is PyTorch's default for Linear/Conv layers: kernel and bias
uniform in +-1/sqrt(fan_in). It is what the course's hyper-parameters were
tuned with. As in PyTorch, embeddings are N(0, 1) and every tensor of a
recurrent layer is uniform in +-1/sqrt(units). (``--init native`` skips this and keeps each framework's own
initializers, which differ: Keras uses Glorot-uniform kernels and zero biases,
Flax LeCun-normal kernels and zero biases.)
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from harness.backend import Weights
from harness.spec import RECURRENT, Shape, TaskSpec, task_layers, task_param_shapes


def _stream(seed: int, name: str) -> np.random.Generator:
    # one stream per parameter name: adding a layer does not shift the others
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def fan_in(name: str, shape: Shape, shapes: dict[str, Shape]) -> int:
    """Fan-in of a parameter; a bias takes its layer's kernel fan-in."""
    if name.endswith(".bias"):
        kernel = shapes.get(name[: -len(".bias")] + ".kernel")
        return math.prod(kernel[:-1]) if kernel else 1
    return math.prod(shape[:-1])


def _draw(layer, name: str, shape: Shape, shapes: dict[str, Shape], seed: int) -> np.ndarray:
    rng = _stream(seed, name)
    if layer.type == "embedding":
        return rng.standard_normal(size=shape)  # torch's nn.Embedding: N(0, 1)
    if layer.type in RECURRENT:
        bound = 1.0 / math.sqrt(layer.units)  # torch's RNN/GRU/LSTM: every tensor
    else:
        bound = 1.0 / math.sqrt(fan_in(name, shape, shapes))
    return rng.uniform(-bound, bound, size=shape)


def canonical_weights(spec: TaskSpec, input_shape: Shape, dtype: str = "float32") -> Weights:
    """Initial parameters for ``spec`` (every network of it), canonical names and layouts;
    ``input_shape`` is the data's sample shape."""
    shapes = task_param_shapes(spec, input_shape)
    layers = {layer.name: layer for layer, _, _ in task_layers(spec, tuple(input_shape))}
    weights: Weights = {}
    for name, shape in shapes.items():
        layer = layers[name.rsplit(".", 1)[0]]
        weights[name] = _draw(layer, name, shape, shapes, spec.recipe.seed).astype(dtype)
    return weights

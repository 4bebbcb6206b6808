"""Spec layers as Keras 3 layers (functional API), and canonical weights in and out.

Keras is NHWC like the spec, and stores dense kernels ``[in, out]`` and conv
kernels ``HWIO``: the canonical layouts, so loading and saving weights is a
plain copy keyed by the spec's layer names, which the Keras layers carry.
"""

from __future__ import annotations

import os
import zlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from harness.spec import (  # noqa: E402
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Shape,
    Sigmoid,
    Tanh,
    TaskSpec,
)

Weights = dict[str, np.ndarray]
_PARAMS = ("kernel", "bias")


def _dropout_seed(seed: int, name: str) -> int:
    # one stream per layer, as harness/init.py does for weights: two dropout
    # layers never draw the same mask, and adding one does not shift the others
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def _keras_layer(layer: Layer, dtype: str, seed: int) -> keras.layers.Layer:
    """One Keras layer for a plain spec layer. Every layer gets the run's dtype:
    a float32 layer would quietly cast a float64 activation down."""
    common = {"name": layer.name, "dtype": dtype}
    match layer:
        case Dense():
            return keras.layers.Dense(layer.units, use_bias=layer.use_bias, **common)
        case Conv2D():
            return keras.layers.Conv2D(
                layer.filters, layer.kernel, strides=layer.stride, padding=layer.padding,
                use_bias=layer.use_bias, **common,
            )  # fmt: skip
        case MaxPool2D():
            return keras.layers.MaxPooling2D(
                layer.size, strides=layer.strides, padding=layer.padding, **common
            )
        case AvgPool2D():
            # tf.nn.avg_pool under it divides by the count of real inputs with
            # "same" padding, which is the spec's rule
            return keras.layers.AveragePooling2D(
                layer.size, strides=layer.strides, padding=layer.padding, **common
            )
        case Flatten():
            return keras.layers.Flatten(**common)  # channels_last: NHWC order
        case ReLU():
            return keras.layers.ReLU(**common)
        case Sigmoid():
            return keras.layers.Activation("sigmoid", **common)
        case Tanh():
            return keras.layers.Activation("tanh", **common)
        case Dropout():
            return keras.layers.Dropout(layer.rate, seed=_dropout_seed(seed, layer.name), **common)
    raise ValueError(f"layer {layer.name!r}: type {layer.type!r} has no Keras translation")


def _apply(layers: tuple[Layer, ...], x, shape: Shape, dtype: str, seed: int):
    """Wire ``layers`` onto the symbolic tensor ``x``; returns (tensor, shape)."""
    for layer in layers:
        expected = layer.out_shape(shape)
        if isinstance(layer, Residual):
            body, _ = _apply(layer.body, x, shape, dtype, seed)
            short, _ = _apply(layer.shortcut, x, shape, dtype, seed)
            x = keras.layers.Add(name=layer.name, dtype=dtype)([body, short])
        elif isinstance(layer, Parallel):
            outs = [_apply(branch, x, shape, dtype, seed)[0] for branch in layer.branches]
            x = keras.layers.Concatenate(axis=-1, name=layer.name, dtype=dtype)(outs)
        else:
            x = _keras_layer(layer, dtype, seed)(x)
        # Keras infers shapes itself; a disagreement with the spec is a translation bug
        if tuple(x.shape[1:]) != tuple(expected):
            raise AssertionError(
                f"layer {layer.name!r}: Keras gives shape {list(x.shape[1:])}, "
                f"the spec {list(expected)}"
            )
        shape = expected
    return x, shape


def build_model(spec: TaskSpec, input_shape: Shape, dtype: str = "float32") -> keras.Model:
    """The spec's model as a Keras functional model, layers named as in the spec.

    Args:
        spec: the task; its recipe seed seeds the dropout layers.
        input_shape: one sample's shape (NHWC or [features]), without the batch axis.
        dtype: "float32" or "float64", for parameters and computation alike.

    Returns:
        A built ``keras.Model`` with Keras' default initializers.
    """
    inputs = keras.Input(shape=tuple(input_shape), dtype=dtype, name="x")
    outputs, _ = _apply(spec.model.layers, inputs, tuple(input_shape), dtype, spec.recipe.seed)
    return keras.Model(inputs, outputs, name=spec.name)


def named_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's parameters keyed by canonical name ``"<layer>.<kernel|bias>"``."""
    named = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Dense | keras.layers.Conv2D):
            continue
        for key in _PARAMS:
            var = getattr(layer, key, None)
            if var is not None:
                named[f"{layer.name}.{key}"] = var
    return named


def set_weights(model: keras.Model, weights: Weights) -> None:
    """Load canonical weights into ``model`` exactly (cast to the model's dtype).

    Raises:
        ValueError: the names or shapes do not match the model's parameters.
    """
    named = named_variables(model)
    if set(named) != set(weights):
        raise ValueError(
            f"weights do not match the model: missing {sorted(set(named) - set(weights))}, "
            f"unexpected {sorted(set(weights) - set(named))}"
        )
    for name, var in named.items():
        if tuple(var.shape) != weights[name].shape:
            raise ValueError(
                f"{name}: weights have shape {weights[name].shape}, the model {tuple(var.shape)}"
            )
        var.assign(np.asarray(weights[name], dtype=var.dtype))


def get_weights(model: keras.Model) -> Weights:
    """The model's current parameters, canonical names and layouts, in its dtype."""
    return {name: keras.ops.convert_to_numpy(var) for name, var in named_variables(model).items()}


def spec_layer_names(layers: tuple[Layer, ...]) -> list[str]:
    """Every spec layer's name, depth first, in ``harness.spec.walk``'s order."""
    names = []
    for layer in layers:
        names.append(layer.name)
        for seq in layer.children():
            names.extend(spec_layer_names(tuple(seq)))
    return names


def activation_model(model: keras.Model, names: list[str]) -> keras.Model:
    """A second functional model over ``model``'s own layers that outputs the
    output of each layer in ``names``, as a dict keyed by name (a list of one
    output would come back unwrapped). Every spec layer, blocks included, has a
    Keras layer of its name: a residual block is its ``Add``, a parallel block its
    ``Concatenate``. It shares the layers and their variables, and leaves ``model``
    and the steps compiled from it as they are.
    """
    outputs = {name: model.get_layer(name).output for name in names}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_activations")

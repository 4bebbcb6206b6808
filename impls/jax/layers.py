"""Spec layers as Flax NNX modules; canonical weights in and out.

Flax already uses the canonical layouts (NHWC activations, ``nnx.Linear``
kernel ``[in, out]``, ``nnx.Conv`` kernel HWIO), so weights convert by name
only. Each layer is stored under its spec name, which puts the canonical name
into the model's own parameter tree: the last two keys of a parameter's path,
e.g. ``("layers", "rblock1", "body", "layers", "rblock1_conv1", "kernel")``,
are its canonical name ``"rblock1_conv1.kernel"``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from harness import spec as S

Weights = dict[str, np.ndarray]
_PADDING = {"valid": "VALID", "same": "SAME"}


class Stack(nnx.Module):
    """Layers keyed by spec name, applied in spec order: ``nnx.Sequential`` with
    names, that passes the dropout switch and key down to the layers that use them."""

    def __init__(self) -> None:
        self.layers = nnx.Dict()
        # split/merge rebuild the Dict in sorted key order: keep the call order apart
        self.order: tuple[str, ...] = ()

    def add(self, name: str, layer) -> None:
        self.layers[name] = layer
        self.order = (*self.order, name)

    def __call__(self, x, *, deterministic: bool, rngs: nnx.Rngs | None = None):
        for name in self.order:
            layer = self.layers[name]
            if isinstance(layer, nnx.Dropout | Stack | Residual | Parallel):
                x = layer(x, deterministic=deterministic, rngs=rngs)
            else:
                x = layer(x)
        return x


class Residual(nnx.Module):
    """``body(x) + shortcut(x)``; an empty shortcut is the identity."""

    def __init__(self, body: Stack, shortcut: Stack):
        self.body = body
        self.shortcut = shortcut

    def __call__(self, x, *, deterministic: bool, rngs: nnx.Rngs | None = None):
        kw = {"deterministic": deterministic, "rngs": rngs}
        return self.body(x, **kw) + self.shortcut(x, **kw)


class Parallel(nnx.Module):
    """Branches on the same input, concatenated on the channel (last) axis."""

    def __init__(self, branches: list[Stack]):
        self.branches = nnx.List(branches)

    def __call__(self, x, *, deterministic: bool, rngs: nnx.Rngs | None = None):
        kw = {"deterministic": deterministic, "rngs": rngs}
        return jnp.concatenate([b(x, **kw) for b in self.branches], axis=-1)


def activations(model: Stack, x: jax.Array) -> dict[str, jax.Array]:
    """Every layer's output with dropout off, keyed by spec name in ``spec.walk`` order.

    A separate walk over the same modules, doing what ``Stack.__call__`` does
    with ``deterministic=True``: the training path is left as it is. A block's
    own output (``body + shortcut``, the concatenation) comes before the
    outputs of the layers inside it, as ``walk`` lists them.
    """
    out: dict[str, jax.Array] = {}
    _record(model, x, out)
    return out


def _record(stack: Stack, x: jax.Array, out: dict[str, jax.Array]) -> jax.Array:
    for name in stack.order:
        layer, inner = stack.layers[name], {}
        match layer:
            case Residual():
                y = _record(layer.body, x, inner) + _record(layer.shortcut, x, inner)
            case Parallel():
                y = jnp.concatenate([_record(b, x, inner) for b in layer.branches], axis=-1)
            case nnx.Dropout():
                y = layer(x, deterministic=True)
            case Stack():
                raise TypeError(f"{name!r}: a bare Stack has no spec layer to name it")
            case _:
                y = layer(x)
        out[name] = y
        out.update(inner)
        x = y
    return x


def flatten(x: jax.Array) -> jax.Array:
    """[N, ...] -> [N, features]; NHWC order is the canonical one, no transpose."""
    return x.reshape(x.shape[0], -1)


def avg_pool(x: jax.Array, window_shape: tuple, strides: tuple, padding: str) -> jax.Array:
    """Average pooling that divides by the number of real inputs under each window."""
    # flax counts padding by default (count_include_pad=True); the spec does not.
    # Its divisor is built with jnp.ones in the default float type, which is
    # float64 once x64 is on: cast back so a float32 model stays float32.
    out = nnx.avg_pool(x, window_shape, strides, padding, count_include_pad=False)
    return out.astype(x.dtype)


def _make_layer(layer: S.Layer, shape: S.Shape, dtype, rngs: nnx.Rngs):
    """One spec layer as a module (parameters) or a plain function (none)."""
    common = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
    match layer:
        case S.Dense():
            return nnx.Linear(shape[0], layer.units, use_bias=layer.use_bias, **common)
        case S.Conv2D():
            return nnx.Conv(
                shape[-1], layer.filters, kernel_size=(layer.kernel, layer.kernel),
                strides=(layer.stride, layer.stride), padding=_PADDING[layer.padding],
                use_bias=layer.use_bias, **common,
            )  # fmt: skip
        case S.MaxPool2D() | S.AvgPool2D():
            pool = nnx.max_pool if isinstance(layer, S.MaxPool2D) else avg_pool
            window, strides = (layer.size,) * 2, (layer.strides,) * 2
            return functools.partial(
                pool, window_shape=window, strides=strides, padding=_PADDING[layer.padding]
            )
        case S.Flatten():
            return flatten
        case S.ReLU():
            return nnx.relu
        case S.Sigmoid():
            return nnx.sigmoid
        case S.Tanh():
            return nnx.tanh
        case S.Dropout():
            # no rngs here: the train step hands a fresh key to every call
            return nnx.Dropout(layer.rate)
        case S.Residual():
            return Residual(
                _stack(layer.body, shape, dtype, rngs),
                _stack(layer.shortcut, shape, dtype, rngs),
            )
        case S.Parallel():
            return Parallel([_stack(b, shape, dtype, rngs) for b in layer.branches])
    raise TypeError(f"layer type {layer.type!r} has no Flax NNX mapping")


def _stack(layers, shape: S.Shape, dtype, rngs: nnx.Rngs) -> Stack:
    seq = Stack()
    for layer in layers:
        if hasattr(nnx.Dict, layer.name):
            raise ValueError(f"layer name {layer.name!r} clashes with a Flax Module attribute")
        seq.add(layer.name, _make_layer(layer, shape, dtype, rngs))
        shape = layer.out_shape(shape)
    return seq


def build_model(spec: S.TaskSpec, input_shape: S.Shape, dtype: str) -> Stack:
    """The spec's model with Flax's own initializers, parameters in ``dtype``.

    Args:
        spec: the task; its ``recipe.seed`` seeds the native initializers.
        input_shape: one sample's shape, NHWC or [features].
        dtype: "float32" or "float64"; given to every layer explicitly, since
            JAX's default float type follows the global x64 flag instead.

    Returns:
        The root ``Stack``; call it as ``model(x, deterministic=...)``.
    """
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        # JAX would silently truncate every float64 request to float32
        raise ValueError("a float64 model needs jax_enable_x64 on (JaxBackend.configure sets it)")
    rngs = nnx.Rngs(params=spec.recipe.seed)
    return _stack(spec.model.layers, tuple(input_shape), jnp.dtype(dtype), rngs)


def to_canonical(params: nnx.State) -> Weights:
    """A parameter-shaped State (parameters or gradients) as canonical numpy."""
    out: Weights = {}
    for path, value in nnx.to_flat_state(params):
        # copy: the arrays may be donated to the next jitted step and reused
        array = value.get_value() if isinstance(value, nnx.Variable) else value
        out[f"{path[-2]}.{path[-1]}"] = np.array(array)
    return out


def get_weights(model: Stack) -> Weights:
    """Current parameters, canonical names and layouts (numpy copies)."""
    return to_canonical(nnx.state(model, nnx.Param))


def set_weights(model: Stack, weights: Weights) -> None:
    """Load canonical weights exactly, in the model's parameter dtype.

    Raises:
        ValueError: if the names or shapes differ from the model's.
    """
    params = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Linear | nnx.Conv):
            for key in ("kernel", "bias"):
                if getattr(node, key, None) is not None:
                    params[f"{path[-1]}.{key}"] = getattr(node, key)
    if set(params) != set(weights):
        raise ValueError(f"weights {sorted(weights)} do not match the model's {sorted(params)}")
    for name, var in params.items():
        if var.shape != weights[name].shape:
            raise ValueError(f"{name}: shape {weights[name].shape}, model has {var.shape}")
        var.set_value(jnp.array(weights[name], dtype=var.dtype))

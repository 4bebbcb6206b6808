"""Spec layers as Keras 3 layers (functional API), and canonical weights in and out.

Keras is NHWC like the spec, and stores dense kernels ``[in, out]``, conv
kernels ``HWIO`` / ``[kernel, in, filters]``, embeddings ``[vocab, dim]`` and
LSTM / SimpleRNN tensors (gates i, f, c, o) in the canonical layouts: loading
and saving them is a plain copy keyed by the spec's layer names, which the Keras
layers carry. Keras' GRU is the exception: its columns are gates z, r, h (the
canonical order is r, z, n) and its ``reset_after`` bias is one ``(2, 3*units)``
variable, input bias over recurrent bias; see ``Binding``.

Masks. Keras attaches a mask to a tensor (``Embedding(mask_zero=True)``) and
hands it on implicitly, but ``Conv1D`` and the global poolings drop it (max
pooling ignores it), so the mask here is an explicit tensor of the functional
graph instead: a ``PaddingMask`` layer (ids != 0) beside the embedding, a
``ShiftMask`` layer after each masked ``conv1d``, passed as ``mask=`` to the
recurrent layers and to ``MaskedGlobalPooling``. Helper layers are named
``"<spec layer>.mask"``: a dot no spec name has, so they never collide. (A Keras
layer given ``mask=`` still attaches its output mask to its output, and Keras
hands that to the next layer whose ``call`` takes a mask: only the recurrent
layers and MaskedGlobalPooling here, which get the same mask explicitly.)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from harness.backend import Weights
from harness.spec import (
    RECURRENT,
    AvgPool2D,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Layer,
    MaxPool2D,
    ModelSpec,
    Parallel,
    ReLU,
    Reshape,
    Residual,
    Shape,
    Sigmoid,
    Softmax,
    Tanh,
    TaskSpec,
    is_weight,
    networks,
)

_PARAMS = ("kernel", "bias")
_RNN_PARAMS = ("kernel", "recurrent_kernel", "bias")
_RNN_CLASSES = {"rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}


# --------------------------------------------------------------------------- mask layers


@keras.saving.register_keras_serializable("rosetta")
class PaddingMask(keras.layers.Layer):
    """The spec's sequence mask of token ids ``[N, steps]``: True where the id is not
    0 (padding). What ``Embedding(mask_zero=True).compute_mask`` gives, as a tensor."""

    def call(self, ids):
        return keras.ops.not_equal(ids, 0)


@keras.saving.register_keras_serializable("rosetta")
class ShiftMask(keras.layers.Layer):
    """The mask of a valid, stride-1 ``conv1d`` of width ``kernel``: window t covers
    steps t .. t+kernel-1 and is real when all of them are, i.e. (padding only
    trails) when its last step is: ``mask[:, kernel-1:]``."""

    def __init__(self, kernel: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel = kernel

    def call(self, mask):
        return mask[:, self.kernel - 1 :]

    def get_config(self) -> dict:
        return {**super().get_config(), "kernel": self.kernel}


@keras.saving.register_keras_serializable("rosetta")
class MaskedGlobalPooling(keras.layers.Layer):
    """Max or mean over the steps of ``[N, steps, features]`` where ``mask [N, steps]``
    is True (no mask: every axis but the first and last, any rank). Keras'
    ``GlobalMaxPooling1D`` ignores a mask, and ``GlobalAveragePooling1D`` divides by
    the real steps, 0/0 on a row without any; the spec's max or mean over no real
    step is 0."""

    def __init__(self, op: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if op not in ("max", "avg"):
            raise ValueError(f"op must be 'max' or 'avg', not {op!r}")
        self.op = op
        # it reads a mask and returns none (compute_mask); without this Keras warns
        # that it "destroys" the mask a recurrent layer attached to its input
        self.supports_masking = True

    def call(self, inputs, mask=None):
        ops = keras.ops
        steps = int(np.prod(inputs.shape[1:-1]))
        inputs = ops.reshape(inputs, (-1, steps, inputs.shape[-1]))
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        keep = ops.expand_dims(mask, -1)
        if self.op == "max":
            lowest = ops.full_like(inputs, -np.inf)
            top = ops.max(ops.where(keep, inputs, lowest), axis=1)
            return ops.where(ops.any(keep, axis=1), top, ops.zeros_like(top))
        weight = ops.cast(keep, inputs.dtype)
        count = ops.maximum(ops.sum(weight, axis=1), ops.ones_like(weight[:, 0]))
        return ops.sum(inputs * weight, axis=1) / count

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_mask(self, inputs, previous_mask):
        return None

    def get_config(self) -> dict:
        return {**super().get_config(), "op": self.op}


def _dropout_seed(seed: int, name: str) -> int:
    # one stream per layer, as harness/init.py does for weights: two dropout
    # layers never draw the same mask, and adding one does not shift the others
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def _recurrent(layer, dtype: str, use_cudnn: bool | str) -> keras.layers.Layer:
    """Keras' SimpleRNN / GRU / LSTM for a spec recurrent layer, in ``Bidirectional``
    when the spec says so (Keras' backward copy reads the reversed sequence, so over
    a post-padded row it steps the padding first, keeping its zero state, then the
    real steps; its outputs are flipped back into time order and concatenated
    after the forward ones, the spec's ``[forward, backward]``).

    ``zero_output_for_mask``: Keras' default (False) repeats the last real output at
    masked steps; the spec outputs zeros there. Only with ``return_sequences``: the
    RNN's last output is its last step's output, which would then be zeroed on
    every padded row. ``Bidirectional`` forces the same setting on both copies.
    """
    cls = _RNN_CLASSES[layer.type]
    kwargs = {
        "return_sequences": layer.return_sequences,
        "unroll": layer.unroll,
        "zero_output_for_mask": layer.return_sequences,
        "dtype": dtype,
    }
    if layer.type == "gru":
        kwargs["reset_after"] = True  # Keras' default; the spec's (and PyTorch's) GRU
    if layer.type in ("gru", "lstm"):
        kwargs["use_cudnn"] = use_cudnn
    if not layer.bidirectional:
        return cls(layer.units, name=layer.name, **kwargs)
    inner = cls(layer.units, name=layer.name, **kwargs)
    bi = keras.layers.Bidirectional(inner, merge_mode="concat", name=layer.name, dtype=dtype)
    if layer.unroll and layer.return_sequences:
        # Keras' unrolled loop (backend rnn, unroll=True) zeroes the masked outputs
        # of a go_backwards layer with the mask in time order while its outputs are
        # in reversed order: real steps get zeroed. Without zero_output_for_mask its
        # masked steps repeat the previous output, and the backward copy reads the
        # trailing padding first, before any real step: that output is still the
        # loop's zero start. (The while_loop path reverses the mask and is right.)
        bi.backward_layer.zero_output_for_mask = False
    return bi


def _layer(layer: Layer, dtype: str, seed: int) -> keras.layers.Layer:
    """One Keras layer for a plain spec layer. Every layer gets the run's dtype:
    a float32 layer would quietly cast a float64 activation down."""
    common = {"name": layer.name, "dtype": dtype}
    match layer:
        case Dense():  # on [steps, features] Keras' Dense acts on the last axis: per step
            return keras.layers.Dense(layer.units, use_bias=layer.use_bias, **common)
        case Conv2D():
            return keras.layers.Conv2D(
                layer.filters,
                layer.kernel,
                strides=layer.stride,
                padding=layer.padding,
                use_bias=layer.use_bias,
                **common,
            )
        case Conv1D():
            # "same" pads as TensorFlow does, the odd step after: the spec's rule
            return keras.layers.Conv1D(
                layer.filters,
                layer.kernel,
                strides=layer.stride,
                padding=layer.padding,
                use_bias=layer.use_bias,
                **common,
            )
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
        case Embedding():
            # the mask is PaddingMask's tensor (see the module docstring), not mask_zero
            return keras.layers.Embedding(layer.vocab, layer.dim, **common)
        case Flatten():
            return keras.layers.Flatten(**common)  # channels_last: NHWC order
        case Reshape():
            return keras.layers.Reshape(tuple(layer.shape), **common)  # row-major, NHWC
        case ReLU():
            return keras.layers.ReLU(**common)
        case Sigmoid():
            return keras.layers.Activation("sigmoid", **common)
        case Tanh():
            return keras.layers.Activation("tanh", **common)
        case Softmax():
            # not keras.layers.Softmax: its call takes the mask Keras attaches to a
            # recurrent layer's output sequence, [N, steps] against [N, steps, classes]
            # (a ValueError); the spec's softmax ignores masks
            return keras.layers.Activation("softmax", **common)
        case Dropout():
            return keras.layers.Dropout(layer.rate, seed=_dropout_seed(seed, layer.name), **common)
    raise ValueError(f"layer {layer.name!r}: type {layer.type!r} has no Keras translation")


def _global_pool(layer: Layer, rank: int, masked: bool, dtype: str) -> keras.layers.Layer:
    """Keras' global pooling over a sequence (1D) or an image (2D); the spec's masked
    pooling of a padded sequence, or of another rank, is MaskedGlobalPooling's."""
    op = "max" if layer.type == "global_maxpool" else "avg"
    common = {"name": layer.name, "dtype": dtype}
    if not masked and rank in (2, 3):
        cls = {
            ("max", 2): keras.layers.GlobalMaxPooling1D,
            ("avg", 2): keras.layers.GlobalAveragePooling1D,
            ("max", 3): keras.layers.GlobalMaxPooling2D,
            ("avg", 3): keras.layers.GlobalAveragePooling2D,
        }[op, rank]
        return cls(**common)
    return MaskedGlobalPooling(op, **common)


def _sequence(layers: tuple[Layer, ...], x, mask, shape: Shape, opts: dict):
    """Wire ``layers`` onto the symbolic tensor ``x`` whose padded steps are False in
    ``mask`` (None: no padding); returns (tensor, mask, shape). ``opts``: dtype,
    seed and use_cudnn."""
    dtype = opts["dtype"]
    for layer in layers:
        expected = layer.out_shape(shape)
        if isinstance(layer, Residual):
            body, mask_body, _ = _sequence(layer.body, x, mask, shape, opts)
            short, _, _ = _sequence(layer.shortcut, x, mask, shape, opts)
            x = keras.layers.Add(name=layer.name, dtype=dtype)([body, short])
            mask = mask_body
        elif isinstance(layer, Parallel):
            outs = [_sequence(branch, x, mask, shape, opts) for branch in layer.branches]
            x = keras.layers.Concatenate(axis=-1, name=layer.name, dtype=dtype)(
                [out for out, _, _ in outs]
            )
            mask = outs[0][1]  # the branches keep the steps alike, or reduce them all
        elif isinstance(layer, Embedding):
            # padding false: unpadded windows (a language model), no mask
            mask = PaddingMask(name=f"{layer.name}.mask")(x) if layer.padding else None
            x = _layer(layer, dtype, opts["seed"])(x)
        elif layer.type in RECURRENT:
            rnn = _recurrent(layer, dtype, opts["use_cudnn"])
            x = rnn(x) if mask is None else rnn(x, mask=mask)
            if not layer.return_sequences:
                mask = None
        elif layer.type in ("global_maxpool", "global_avgpool"):
            pool = _global_pool(layer, len(shape), mask is not None, dtype)
            x = pool(x) if mask is None else pool(x, mask=mask)
            mask = None
        else:
            x = _layer(layer, dtype, opts["seed"])(x)
            if isinstance(layer, Conv1D) and mask is not None and layer.kernel > 1:
                # the spec allows only valid, stride-1 conv1d on a padded sequence
                mask = ShiftMask(layer.kernel, name=f"{layer.name}.mask")(mask)
        # Keras infers shapes itself; a disagreement with the spec is a translation bug
        if tuple(x.shape[1:]) != tuple(expected):
            raise AssertionError(
                f"layer {layer.name!r}: Keras gives shape {list(x.shape[1:])}, "
                f"the spec {list(expected)}"
            )
        shape = expected
    return x, mask, shape


def input_dtype(model: ModelSpec, dtype: str) -> str:
    """int32 token ids when the network starts with an embedding, ``dtype`` otherwise."""
    return "int32" if model.layers[0].type == "embedding" else dtype


def build_network(
    model: ModelSpec,
    input_shape: Shape,
    dtype: str = "float32",
    seed: int = 0,
    use_cudnn: bool | str = "auto",
    name: str = "model",
) -> keras.Model:
    """One network of the spec as a Keras functional model, layers named as in the spec.

    Args:
        model: the network (a task's model, or a gan's generator or discriminator).
        input_shape: one sample's shape (NHWC, [features] or [steps]), without the batch axis.
        dtype: "float32" or "float64", for parameters and computation alike.
        seed: the recipe's seed; it seeds the dropout layers.
        use_cudnn: Keras' GRU / LSTM argument: "auto" takes cuDNN's fused kernel on a
            GPU where it can; False keeps Keras' own step loop (XLA cannot compile cuDNN's).
        name: the Keras model's name.

    Returns:
        A built ``keras.Model`` with Keras' default initializers.
    """
    inputs = keras.Input(shape=tuple(input_shape), dtype=input_dtype(model, dtype), name="x")
    opts = {"dtype": dtype, "seed": seed, "use_cudnn": use_cudnn}
    outputs, _, _ = _sequence(model.layers, inputs, None, tuple(input_shape), opts)
    return keras.Model(inputs, outputs, name=name)


def build_networks(
    spec: TaskSpec,
    input_shape: Shape,
    dtype: str = "float32",
    use_cudnn: bool | str = "auto",
) -> dict[str, keras.Model]:
    """Every network the task trains, keyed by role (``harness.spec.networks``), each
    as ``build_network`` builds it: the model named after the task, a gan's networks
    ``<task>_generator`` and ``<task>_discriminator``; ``recipe.seed`` seeds dropout."""
    return {
        role: build_network(
            model,
            shape,
            dtype,
            spec.recipe.seed,
            use_cudnn,
            name=spec.name if role == "model" else f"{spec.name}_{role}",
        )
        for role, model, shape in networks(spec, tuple(input_shape))
    }


def activation_model(model: keras.Model, names: list[str]) -> keras.Model:
    """A second functional model over ``model``'s own layers that outputs the
    output of each layer in ``names``, as a dict keyed by name (a list of one
    output would come back unwrapped). Every spec layer, blocks included, has a
    Keras layer of its name: a residual block is its ``Add``, a parallel block its
    ``Concatenate``. It shares the layers and their variables, and leaves ``model``
    and the steps compiled from it as they are.
    """
    outputs = {name: model.get_layer(name).output for name in names}
    return keras.Model(model.input, outputs, name=f"{model.name}_activations")


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class Binding:
    """One Keras variable and the canonical parameter(s) it holds.

    ``to_canonical`` splits the variable's value (or its gradient) into the
    canonical arrays of ``names``; ``from_canonical`` joins them back. Both only
    move values, so a round trip is exact.
    """

    variable: keras.Variable
    names: tuple[str, ...]
    to_canonical: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    from_canonical: Callable[..., np.ndarray]


def _plain(variable, name: str) -> Binding:
    return Binding(variable, (name,), lambda a: (a,), lambda a: a)


def swap_gru_gates(a: np.ndarray) -> np.ndarray:
    """Keras' GRU columns (z, r, h) as the canonical (r, z, n), or back: the first two
    blocks of ``units`` columns change places, which is its own inverse."""
    u = a.shape[-1] // 3
    return np.concatenate([a[..., u : 2 * u], a[..., :u], a[..., 2 * u :]], axis=-1)


def _cell_bindings(cell, gru: bool, prefix: str) -> list[Binding]:
    """A recurrent cell's kernel, recurrent_kernel and bias(es) under ``prefix``."""
    if not gru:  # SimpleRNN and LSTM (i, f, c, o): the canonical layouts
        return [_plain(getattr(cell, key), f"{prefix}{key}") for key in _RNN_PARAMS]
    return [
        Binding(cell.kernel, (f"{prefix}kernel",), lambda a: (swap_gru_gates(a),), swap_gru_gates),
        Binding(
            cell.recurrent_kernel,
            (f"{prefix}recurrent_kernel",),
            lambda a: (swap_gru_gates(a),),
            swap_gru_gates,
        ),
        # reset_after: one (2, 3*units) bias, the input bias over the recurrent one
        Binding(
            cell.bias,
            (f"{prefix}bias", f"{prefix}recurrent_bias"),
            lambda a: (swap_gru_gates(a[0]), swap_gru_gates(a[1])),
            lambda b, rb: np.stack([swap_gru_gates(b), swap_gru_gates(rb)]),
        ),
    ]


def bindings(model: keras.Model) -> list[Binding]:
    """Every trainable variable of ``model`` with its canonical name(s), in layer order."""
    out: list[Binding] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense | keras.layers.Conv1D | keras.layers.Conv2D):
            for key in _PARAMS:
                var = getattr(layer, key, None)
                if var is not None:
                    out.append(_plain(var, f"{layer.name}.{key}"))
        elif isinstance(layer, keras.layers.Embedding):
            out.append(_plain(layer.embeddings, f"{layer.name}.embeddings"))
        elif isinstance(layer, keras.layers.Bidirectional):
            gru = isinstance(layer.forward_layer, keras.layers.GRU)
            out += _cell_bindings(layer.forward_layer.cell, gru, f"{layer.name}.")
            out += _cell_bindings(layer.backward_layer.cell, gru, f"{layer.name}.backward_")
        elif isinstance(layer, keras.layers.RNN):
            gru = isinstance(layer, keras.layers.GRU)
            out += _cell_bindings(layer.cell, gru, f"{layer.name}.")
    return out


def to_canonical(binds: list[Binding], values) -> Weights:
    """Arrays (variable values or their gradients, one per binding) as canonical weights."""
    out: Weights = {}
    for bind, value in zip(binds, values, strict=True):
        arrays = bind.to_canonical(keras.ops.convert_to_numpy(value))
        out.update(zip(bind.names, arrays, strict=True))
    return out


def _load(binds: list[Binding], weights: Weights) -> None:
    """Load canonical weights into the variables of ``binds`` exactly (cast to each
    variable's dtype).

    Raises:
        ValueError: the names or shapes do not match the bindings' parameters.
    """
    expected = to_canonical(binds, [np.zeros(b.variable.shape) for b in binds])
    if set(expected) != set(weights):
        raise ValueError(
            f"weights do not match the model: missing {sorted(set(expected) - set(weights))}, "
            f"unexpected {sorted(set(weights) - set(expected))}"
        )
    for name, want in expected.items():
        if want.shape != np.shape(weights[name]):
            raise ValueError(
                f"{name}: weights have shape {np.shape(weights[name])}, the model {want.shape}"
            )
    for bind in binds:
        value = bind.from_canonical(*(np.asarray(weights[n]) for n in bind.names))
        bind.variable.assign(np.asarray(value, dtype=bind.variable.dtype))


def _task_bindings(networks: keras.Model | dict[str, keras.Model]) -> list[Binding]:
    models = [networks] if isinstance(networks, keras.Model) else networks.values()
    return [bind for model in models for bind in bindings(model)]


def get_weights(networks: keras.Model | dict[str, keras.Model]) -> Weights:
    """Current parameters of a model or of a task's networks (by role), canonical
    names and layouts, in their dtype."""
    binds = _task_bindings(networks)
    return to_canonical(binds, [b.variable for b in binds])


def set_weights(networks: keras.Model | dict[str, keras.Model], weights: Weights) -> None:
    """Load canonical weights exactly into a model or a task's networks (by role)."""
    _load(_task_bindings(networks), weights)


def penalized(binds: list[Binding]) -> list[keras.Variable]:
    """The variables whose canonical parameters ``recipe.l1`` counts
    (``harness.spec.is_weight``: kernels, recurrent kernels, embeddings; no bias).
    A variable holds one kind only (a GRU's stacked bias holds two biases)."""
    out = []
    for bind in binds:
        kinds = {is_weight(name) for name in bind.names}
        if len(kinds) != 1:
            raise AssertionError(f"{bind.names}: one variable holds weights and biases")
        if kinds == {True}:
            out.append(bind.variable)
    return out

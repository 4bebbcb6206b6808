"""Spec layers as Flax NNX modules; canonical weights in and out.

Flax already uses the canonical layouts (NHWC activations, ``nnx.Linear``
kernel ``[in, out]``, ``nnx.Conv`` kernel HWIO or ``[kernel, in, out]`` in 1-d,
``nnx.Embed`` table ``[vocab, dim]``), and the recurrent cells here keep the
canonical recurrent parameters as they are, so weights convert by name only.
Each layer is stored under its spec name, which puts the canonical name into
the model's own parameter tree: a parameter's path runs through its spec
layer's key, e.g. ``("layers", "rblock1", "body", "layers", "rblock1_conv1",
"kernel")`` is ``"rblock1_conv1.kernel"`` and ``("layers", "gru", "rnn",
"backward_rnn", "cell", "kernel")`` is ``"gru.backward_kernel"`` (see
``bindings``).

Sequences carry a mask of real steps beside the activations, ``(x, mask)``
through ``Stack``: ``nnx.Embed`` starts it (ids != 0), a valid 1-d conv shortens
it, recurrent layers and global pooling read it, every other layer passes it on.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from harness import spec as S
from harness.backend import Weights

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
        return self.run(x, None, deterministic=deterministic, rngs=rngs)[0]

    def run(self, x, mask, *, deterministic: bool, rngs: nnx.Rngs | None = None):
        """``(x, mask) -> (y, mask)``: the layers in order, the mask of real steps
        (None: no padded sequence) passed along."""
        for name in self.order:
            x, mask = apply(self.layers[name], x, mask, deterministic=deterministic, rngs=rngs)
        return x, mask


def apply(layer, x, mask, *, deterministic: bool, rngs: nnx.Rngs | None = None):
    """One spec layer on ``(x, mask)``, giving ``(y, mask)``.

    The mask (``[N, steps]`` bool, True at real steps) starts at the embedding,
    is shortened by a valid 1-d conv, read by recurrent layers and the global
    pools, and passed on unchanged by every other layer (``harness.spec``
    rejects a model where a layer would mix padded steps into real ones).
    """
    match layer:
        case Stack() | Residual() | Parallel():
            return layer.run(x, mask, deterministic=deterministic, rngs=rngs)
        case nnx.Dropout():
            return layer(x, deterministic=deterministic, rngs=rngs), mask
        case Embed():
            return layer(x), (x != 0) if layer.padding else None
        case Recurrent():
            return layer(x, mask)
        case nnx.Conv() if mask is not None:
            # valid and stride 1 (the spec checks): a window is real when its last step is
            return layer(x), mask[:, layer.kernel_size[0] - 1 :]
        case _ if layer is global_max_pool or layer is global_avg_pool:
            return layer(x, mask), None
    return layer(x), mask


class Residual(nnx.Module):
    """``body(x) + shortcut(x)``; an empty shortcut is the identity."""

    def __init__(self, body: Stack, shortcut: Stack):
        self.body = body
        self.shortcut = shortcut

    def run(self, x, mask, *, deterministic: bool, rngs: nnx.Rngs | None = None):
        kw = {"deterministic": deterministic, "rngs": rngs}
        (body, body_mask), (short, _) = (
            self.body.run(x, mask, **kw),
            self.shortcut.run(x, mask, **kw),
        )
        return body + short, body_mask


class Parallel(nnx.Module):
    """Branches on the same input, concatenated on the channel (last) axis."""

    def __init__(self, branches: list[Stack]):
        self.branches = nnx.List(branches)

    def run(self, x, mask, *, deterministic: bool, rngs: nnx.Rngs | None = None):
        kw = {"deterministic": deterministic, "rngs": rngs}
        outs = [b.run(x, mask, **kw) for b in self.branches]
        # the spec lets branches keep the time axis only alike: any branch's mask will do
        return jnp.concatenate([y for y, _ in outs], axis=-1), outs[0][1]


def flatten(x: jax.Array) -> jax.Array:
    """[N, ...] -> [N, features]; NHWC order is the canonical one, no transpose."""
    return x.reshape(x.shape[0], -1)


def reshape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Each sample to ``shape``, in NHWC (row-major) order."""
    return x.reshape(x.shape[0], *shape)


def avg_pool(x: jax.Array, window_shape: tuple, strides: tuple, padding: str) -> jax.Array:
    """Average pooling that divides by the number of real inputs under each window."""
    # flax counts padding by default (count_include_pad=True); the spec does not.
    # Its divisor is built with jnp.ones in the default float type, which is
    # float64 once x64 is on: cast back so a float32 model stays float32.
    out = nnx.avg_pool(x, window_shape, strides, padding, count_include_pad=False)
    return out.astype(x.dtype)


def max_pool(x: jax.Array, window_shape: tuple, strides: tuple, padding: str) -> jax.Array:
    """``nnx.max_pool``, with the common case (square windows that tile the image:
    stride = size, nothing padded) as a reshape and a max, whose gradient is cheap.

    ``nnx.max_pool`` is ``lax.reduce_window``; its gradient is XLA's
    ``select_and_scatter_add``, which XLA:CPU runs as a slow scalar loop: about
    45% of LeNet's training step at batch 256 on the CPU, more than both
    convolutions' gradients. ``_tiled_max_pool`` gives bit for bit the same
    outputs and gradients (each window's gradient to its first maximum in
    row-major order, as ``select_and_scatter_add`` with ``ge``, torch and TF do),
    in half the step time. "valid" drops the rows and columns no window covers,
    as ``reduce_window`` does; every other case stays with ``nnx.max_pool``.
    """
    k = window_shape[0]
    _, h, w, _ = x.shape
    tiles = tuple(window_shape) == tuple(strides) == (k, k)
    if tiles and (padding == "VALID" or (h % k == 0 and w % k == 0)):
        return _tiled_max_pool(x[:, : h - h % k, : w - w % k], k)
    return nnx.max_pool(x, window_shape, strides, padding)


def _windows(x: jax.Array, k: int) -> jax.Array:
    """[N, H, W, C] -> [N, H/k, k, W/k, k, C]: the pixels of each k x k window."""
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c)


# jitted, so that eager mode dispatches each as one operation, as it does
# reduce_window and select_and_scatter_add; inside a jitted step they are inlined
@functools.partial(jax.jit, static_argnums=1)
def _window_max(x: jax.Array, k: int) -> jax.Array:
    return _windows(x, k).max(axis=(2, 4))


@functools.partial(jax.jit, static_argnums=0)
def _window_max_grad(k: int, x: jax.Array, y: jax.Array, g: jax.Array) -> jax.Array:
    """``g`` to each window's first maximum (row-major), zeros elsewhere."""
    win, taken, parts = _windows(x, k), jnp.zeros(y.shape, bool), []
    for i in range(k):
        for j in range(k):
            hit = (win[:, :, i, :, j, :] == y) & ~taken
            taken = taken | hit
            parts.append(jnp.where(hit, g, jnp.zeros_like(g)))
    # [ki * kj, N, H/k, W/k, C] -> [N, H/k, ki, W/k, kj, C] -> [N, H, W, C]
    tiles = jnp.stack(parts).reshape(k, k, *y.shape).transpose(2, 3, 0, 4, 1, 5)
    return tiles.reshape(x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x: jax.Array, k: int) -> jax.Array:
    return _window_max(x, k)


def _tiled_max_pool_fwd(x: jax.Array, k: int):
    y = _window_max(x, k)
    return y, (x, y)


def _tiled_max_pool_bwd(k: int, res, g: jax.Array):
    return (_window_max_grad(k, *res, g),)


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


def global_max_pool(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Max over every axis but the last; on a padded sequence over the real steps
    only, and 0 for a row without any."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    if mask is None:
        return flat.max(axis=1)
    real = mask[:, :, None]
    top = jnp.where(real, flat, -jnp.inf).max(axis=1)
    return jnp.where(real.any(axis=1), top, 0)


def global_avg_pool(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean over every axis but the last; on a padded sequence over the real steps
    only (a row without any gives 0, not 0/0)."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    if mask is None:
        return flat.mean(axis=1)
    real = mask[:, :, None].astype(x.dtype)
    return (flat * real).sum(axis=1) / jnp.maximum(real.sum(axis=1), 1)


class Embed(nnx.Embed):
    """``nnx.Embed`` that knows whether id 0 is padding: then it starts the mask."""

    def __init__(self, num_embeddings: int, features: int, *, padding: bool = True, **kwargs):
        super().__init__(num_embeddings, features, **kwargs)
        self.padding = padding


# --------------------------------------------------------------------------- recurrent


class _Cell(nnx.RNNCellBase):
    """A recurrent cell holding the canonical parameters as they are:
    ``kernel [in, G*units]``, ``recurrent_kernel [units, G*units]``,
    ``bias [G*units]``, gates in PyTorch's order (``harness.spec.GATE_ORDER``).

    Flax's own cells cannot load them: ``nnx.GRUCell`` has no recurrent bias at
    all (its docstring shows ``b_hn``, but its ``dense_h`` has ``use_bias=False``),
    so it has 3*units parameters fewer than PyTorch's and Keras' GRU, and
    ``nnx.LSTMCell`` / ``nnx.SimpleCell`` keep one ``nnx.Linear`` per gate and
    side. One ``[in, G*units]`` matmul per side is also what cuDNN and Keras do.
    Initialized as Flax's cells are: LeCun normal kernel, orthogonal recurrent
    kernel, zero biases.
    """

    gates: ClassVar[int]

    def __init__(self, in_features: int, hidden_features: int, *, dtype, rngs: nnx.Rngs):
        g = self.gates * hidden_features
        self.in_features, self.hidden_features, self.dtype = in_features, hidden_features, dtype
        init, orthogonal = nnx.initializers.lecun_normal(), nnx.initializers.orthogonal()
        self.kernel = nnx.Param(init(rngs.params(), (in_features, g), dtype))
        self.recurrent_kernel = nnx.Param(orthogonal(rngs.params(), (hidden_features, g), dtype))
        self.bias = nnx.Param(jnp.zeros((g,), dtype))

    def initialize_carry(self, input_shape: tuple[int, ...], rngs=None):
        # the spec's initial state is zero: no random carry, so no rngs needed
        return jnp.zeros((*input_shape[:-1], self.hidden_features), self.dtype)

    @staticmethod
    def hidden(carry) -> jax.Array:
        """The carry's hidden state (what the layer outputs)."""
        return carry

    @property
    def num_feature_axes(self) -> int:
        return 1


class SimpleCell(_Cell):
    """h' = tanh(x W + b + h U)"""

    gates = 1

    def __call__(self, h, x):
        h = jnp.tanh(x @ self.kernel[...] + self.bias[...] + h @ self.recurrent_kernel[...])
        return h, h


class GRUCell(_Cell):
    """PyTorch's GRU (Keras' ``reset_after``): both bias vectors, gates r, z, n;
    n = tanh(x Wn + bn + r * (h Un + un)), h' = (1 - z) n + z h."""

    gates = 3

    def __init__(self, in_features: int, hidden_features: int, *, dtype, rngs: nnx.Rngs):
        super().__init__(in_features, hidden_features, dtype=dtype, rngs=rngs)
        self.recurrent_bias = nnx.Param(jnp.zeros((3 * hidden_features,), dtype))

    def __call__(self, h, x):
        xr, xz, xn = jnp.split(x @ self.kernel[...] + self.bias[...], 3, axis=-1)
        hh = h @ self.recurrent_kernel[...] + self.recurrent_bias[...]
        hr, hz, hn = jnp.split(hh, 3, axis=-1)
        r, z = nnx.sigmoid(xr + hr), nnx.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h


class LSTMCell(_Cell):
    """Gates i, f, g, o; the carry is ``(c, h)`` as in ``nnx.LSTMCell``."""

    gates = 4

    def initialize_carry(self, input_shape: tuple[int, ...], rngs=None):
        h = super().initialize_carry(input_shape)
        return h, h

    @staticmethod
    def hidden(carry) -> jax.Array:
        return carry[1]

    def __call__(self, carry, x):
        c, h = carry
        z = x @ self.kernel[...] + self.bias[...] + h @ self.recurrent_kernel[...]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = nnx.sigmoid(f) * c + nnx.sigmoid(i) * jnp.tanh(g)
        h = nnx.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


_CELLS: dict[str, type[_Cell]] = {"rnn": SimpleCell, "gru": GRUCell, "lstm": LSTMCell}


def stepped(cell: _Cell, x: jax.Array, mask: jax.Array | None, reverse: bool = False):
    """The cell stepped in a Python for loop, ``(last carry, outputs [N, steps, units])``:
    jit traces every step, so the program holds ``steps`` copies of the cell.
    Padded steps keep the state and output zeros; ``reverse`` runs from the last
    step down, so the backward direction starts at each row's last real step."""
    steps = x.shape[1]
    carry = cell.initialize_carry(x[:, 0].shape)
    outs: list = [None] * steps
    for t in reversed(range(steps)) if reverse else range(steps):
        new, y = cell(carry, x[:, t])
        if mask is not None:
            real = mask[:, t, None]
            new = jax.tree.map(functools.partial(jnp.where, real), new, carry)
            y = jnp.where(real, y, 0)
        carry, outs[t] = new, y
    return carry, jnp.stack(outs, axis=1)


class Recurrent(nnx.Module):
    """A spec ``rnn``/``gru``/``lstm`` layer: one cell per direction, scanned by
    ``nnx.RNN`` (``nnx.Bidirectional`` for two directions) or, when the spec asks
    to unroll, stepped in a Python for loop.

    The scan takes ``seq_lengths`` (the mask's row sums: the harness pads at the
    end) and two fixes: ``nnx.RNN`` runs the cell over the padded steps too,
    so their outputs are zeroed here, and it picks each row's carry at index
    ``length - 1``, which is the *last* step's carry for a row of length 0,
    so those rows are set back to the zero state. The backward direction flips
    each row's real steps only (``flip_sequences``) and flips the outputs back.
    """

    def __init__(self, layer: S.Layer, in_features: int, dtype, rngs: nnx.Rngs):
        cell = _CELLS[layer.type]

        def direction() -> nnx.RNN:
            # rngs=False: no RngStream state (the carry starts at zero), only Params
            made = cell(in_features, layer.units, dtype=dtype, rngs=rngs)
            return nnx.RNN(made, return_carry=True, rngs=False)

        if layer.bidirectional:
            self.rnn = nnx.Bidirectional(direction(), direction(), return_carry=True, rngs=False)
        else:
            self.rnn = direction()
        self.unroll = layer.unroll
        self.return_sequences = layer.return_sequences

    @property
    def cells(self) -> list[_Cell]:
        """The forward cell, then the backward one if any."""
        if isinstance(self.rnn, nnx.Bidirectional):
            return [self.rnn.forward_rnn.cell, self.rnn.backward_rnn.cell]
        return [self.rnn.cell]

    def __call__(self, x: jax.Array, mask: jax.Array | None):
        cells = self.cells
        if self.unroll:
            runs = [stepped(c, x, mask, reverse=i == 1) for i, c in enumerate(cells)]
            carries = [carry for carry, _ in runs]
            outs = jnp.concatenate([o for _, o in runs], axis=-1)
        else:
            lengths = None if mask is None else mask.sum(axis=1)
            carries, outs = _scanned(*nnx.split(self.rnn), x, lengths)
            if len(cells) == 1:
                carries = [carries]
            if mask is not None:
                outs = jnp.where(mask[:, :, None], outs, 0)
                empty = (lengths == 0)[:, None]
                carries = [jax.tree.map(lambda a: jnp.where(empty, 0, a), c) for c in carries]
        if self.return_sequences:
            return outs, mask
        return jnp.concatenate([c.hidden(h) for c, h in zip(cells, carries, strict=True)], -1), None


@functools.partial(jax.jit, static_argnums=0)
def _scanned(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array, lengths: jax.Array | None):
    """``nnx.RNN`` / ``nnx.Bidirectional`` with return_carry, jitted on its own.

    Under an outer jit (graph mode) this is inlined. Without one (eager mode) it
    keeps the compiled scan: ``lax.scan`` is one primitive, so eager JAX compiles
    its body, and ``nnx.RNN`` builds a new body function on every call, which
    eager dispatch would trace and compile again each step (seconds per step).
    """
    return nnx.merge(graphdef, state)(x, seq_lengths=lengths)


# --------------------------------------------------------------------------- building


def _layer(layer: S.Layer, shape: S.Shape, dtype, rngs: nnx.Rngs):
    """One spec layer as a module (parameters) or a plain function (none)."""
    common = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
    match layer:
        case S.Dense():
            # on [steps, features] too: nnx.Linear contracts the last axis
            return nnx.Linear(shape[-1], layer.units, use_bias=layer.use_bias, **common)
        case S.Conv2D() | S.Conv1D():
            dims = 2 if isinstance(layer, S.Conv2D) else 1
            return nnx.Conv(
                shape[-1],
                layer.filters,
                kernel_size=(layer.kernel,) * dims,
                strides=(layer.stride,) * dims,
                padding=_PADDING[layer.padding],
                use_bias=layer.use_bias,
                **common,
            )
        case S.MaxPool2D() | S.AvgPool2D():
            pool = max_pool if isinstance(layer, S.MaxPool2D) else avg_pool
            window, strides = (layer.size,) * 2, (layer.strides,) * 2
            return functools.partial(
                pool, window_shape=window, strides=strides, padding=_PADDING[layer.padding]
            )
        case S.GlobalMaxPool():
            return global_max_pool
        case S.GlobalAvgPool():
            return global_avg_pool
        case S.Embedding():
            return Embed(layer.vocab, layer.dim, padding=layer.padding, **common)
        case S.RNN() | S.GRU() | S.LSTM():
            return Recurrent(layer, shape[-1], dtype, rngs)
        case S.Flatten():
            return flatten
        case S.Reshape():
            return functools.partial(reshape, shape=tuple(layer.shape))
        case S.ReLU():
            return nnx.relu
        case S.Sigmoid():
            return nnx.sigmoid
        case S.Tanh():
            return nnx.tanh
        case S.Softmax():
            return nnx.softmax
        case S.Dropout():
            # no rngs here: the train step hands a fresh key to every call
            return nnx.Dropout(layer.rate)
        case S.Residual():
            return Residual(
                _sequence(layer.body, shape, dtype, rngs),
                _sequence(layer.shortcut, shape, dtype, rngs),
            )
        case S.Parallel():
            return Parallel([_sequence(b, shape, dtype, rngs) for b in layer.branches])
    raise TypeError(f"layer type {layer.type!r} has no Flax NNX mapping")


def _sequence(layers, shape: S.Shape, dtype, rngs: nnx.Rngs) -> Stack:
    seq = Stack()
    for layer in layers:
        if hasattr(nnx.Dict, layer.name):
            raise ValueError(f"layer name {layer.name!r} clashes with a Flax Module attribute")
        seq.add(layer.name, _layer(layer, shape, dtype, rngs))
        shape = layer.out_shape(shape)
    return seq


def _check_dtype(dtype: str) -> None:
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        # JAX would silently truncate every float64 request to float32
        raise ValueError("a float64 model needs jax_enable_x64 on (JaxBackend.configure sets it)")


def build_network(model: S.ModelSpec, input_shape: S.Shape, dtype: str, rngs: nnx.Rngs) -> Stack:
    """One network of a task with Flax's own initializers, drawn from ``rngs``,
    parameters in ``dtype`` ("float32" or "float64"; given to every layer
    explicitly, since JAX's default float type follows the global x64 flag).
    The root ``Stack``; call it as ``model(x, deterministic=...)``."""
    _check_dtype(dtype)
    return _sequence(model.layers, tuple(input_shape), jnp.dtype(dtype), rngs)


def build_networks(spec: S.TaskSpec, data_shape: S.Shape, dtype: str) -> dict[str, Stack]:
    """Every network the task trains, keyed by role (``harness.spec.networks``):
    ``{"model": ...}``, or a gan's ``{"generator": ..., "discriminator": ...}``.

    Args:
        spec: the task; its ``recipe.seed`` seeds the native initializers (one
            stream for all networks, so a gan's two networks start apart).
        data_shape: the data's sample shape (a generator's input is its noise).
        dtype: "float32" or "float64", as in ``build_network``.
    """
    rngs = nnx.Rngs(params=spec.recipe.seed)
    return {
        role: build_network(model, shape, dtype, rngs)
        for role, model, shape in S.networks(spec, tuple(data_shape))
    }


def activations(model: Stack, x: jax.Array) -> dict[str, jax.Array]:
    """Every layer's output with dropout off, keyed by spec name in ``spec.walk`` order.

    A separate walk over the same modules, doing what ``Stack.__call__`` does
    with ``deterministic=True``: the training path is left as it is. A block's
    own output (``body + shortcut``, the concatenation) comes before the
    outputs of the layers inside it, as ``walk`` lists them. Sequences are
    ``[N, steps, features]`` already, the canonical layout.
    """
    out: dict[str, jax.Array] = {}
    _record(model, x, None, out)
    return out


def _record(stack: Stack, x: jax.Array, mask, out: dict[str, jax.Array]):
    for name in stack.order:
        layer, inner = stack.layers[name], {}
        match layer:
            case Residual():
                y, mask_out = _record(layer.body, x, mask, inner)
                y = y + _record(layer.shortcut, x, mask, inner)[0]
            case Parallel():
                outs = [_record(b, x, mask, inner) for b in layer.branches]
                y, mask_out = jnp.concatenate([o for o, _ in outs], axis=-1), outs[0][1]
            case Stack():
                raise TypeError(f"{name!r}: a bare Stack has no spec layer to name it")
            case _:
                y, mask_out = apply(layer, x, mask, deterministic=True)
        out[name] = y
        out.update(inner)
        x, mask = y, mask_out
    return x, mask


# --------------------------------------------------------------------------- canonical weights

Path = tuple
# Flax's parameter names that are not the canonical ones
_RENAMED = {"embedding": "embeddings"}


def bindings(model: Stack) -> dict[Path, str]:
    """Each ``nnx.Param``'s path in the model -> its canonical name.

    The spec layer is the deepest ``Stack`` entry on the path; what lies between it
    and the parameter are Flax's wrappers (``rnn``, ``forward_rnn``, ``cell``), of
    which only ``backward_rnn`` shows in the name, as the ``backward_`` prefix.
    """
    layer_paths: dict[Path, str] = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, Stack):
            for name in node.order:
                layer_paths[(*path, "layers", name)] = name
    names: dict[Path, str] = {}
    for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        cut = max(i for i in range(len(path)) if path[:i] in layer_paths)
        inside = path[cut:]
        prefix = "backward_" if "backward_rnn" in inside else ""
        names[path] = f"{layer_paths[path[:cut]]}.{prefix}{_RENAMED.get(path[-1], path[-1])}"
    if len(set(names.values())) != len(names):
        raise ValueError(f"two parameters share a canonical name: {sorted(names.values())}")
    return names


def to_canonical(params: nnx.State, names: dict[Path, str]) -> Weights:
    """A parameter-shaped State (parameters or gradients) as canonical numpy."""
    out: Weights = {}
    for path, value in nnx.to_flat_state(params):
        # copy: the arrays may be donated to the next jitted step and reused
        array = value.get_value() if isinstance(value, nnx.Variable) else value
        out[names[path]] = np.array(array)
    return out


def get_weights(networks: Stack | dict[str, Stack]) -> Weights:
    """Current parameters of a model or of a task's networks (by role), canonical
    names and layouts (numpy copies)."""
    out: Weights = {}
    for model in [networks] if isinstance(networks, Stack) else networks.values():
        out.update(to_canonical(nnx.state(model, nnx.Param), bindings(model)))
    return out


def set_weights(networks: Stack | dict[str, Stack], weights: Weights) -> None:
    """Load canonical weights exactly into a model, or into a task's networks (by
    role), each in its parameter dtype.

    Raises:
        ValueError: if a name of ``weights`` belongs to no network, or a network's
            names or shapes differ from its share of ``weights``.
    """
    if isinstance(networks, Stack):
        _load(networks, weights)
        return
    unused = set(weights)
    for model in networks.values():
        own = set(bindings(model).values())
        _load(model, {k: v for k, v in weights.items() if k in own})
        unused -= own
    if unused:
        raise ValueError(f"weights {sorted(unused)} belong to none of the task's networks")


def _load(model: Stack, weights: Weights) -> None:
    """Load one model's canonical weights exactly, in its parameter dtype.

    Raises:
        ValueError: if the names or shapes differ from the model's.
    """
    names = bindings(model)
    params = {names[path]: var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    if set(params) != set(weights):
        raise ValueError(f"weights {sorted(weights)} do not match the model's {sorted(params)}")
    for name, var in params.items():
        if var.shape != weights[name].shape:
            raise ValueError(f"{name}: shape {weights[name].shape}, model has {var.shape}")
        var.set_value(jnp.array(weights[name], dtype=var.dtype))


def check_concrete(networks: dict[str, Stack]) -> None:
    """Raise if a network built abstractly (``nnx.eval_shape``) still holds a value
    that the canonical weights did not fill (a state that is not a parameter)."""
    for role, model in networks.items():
        for path, value in nnx.to_flat_state(nnx.state(model)):
            if not isinstance(value.get_value(), jax.Array):
                raise ValueError(f"{role}: {'.'.join(map(str, path))} has no value after loading")

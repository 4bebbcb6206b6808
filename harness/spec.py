"""The framework-neutral task spec: data + model (a graph of named layers) + recipe.

A task is a TOML file validated into frozen pydantic models. The spec alone
determines every layer's output shape and parameter count, so a bad spec is
rejected before any framework is imported, and each backend's parameter count
can be checked against the spec's.

Conventions every backend follows:
  * Activations are NHWC (images) or [N, features] (vectors).
  * Canonical parameter names are ``"<layer name>.<param>"``; layouts are fixed:
    dense kernel ``[in, out]``, conv2d kernel ``HWIO``, biases ``[out]``.
  * ``flatten`` flattens in NHWC order (a NCHW backend transposes first).
  * Padding ``same`` follows the XLA/TensorFlow rule: output ``ceil(in/stride)``,
    the odd pixel of padding goes after (bottom/right). Average pooling with
    ``same`` padding divides by the number of real (unpadded) inputs.
  * Losses take logits: ``binary_cross_entropy`` and ``softmax_cross_entropy``
    include their sigmoid/softmax, as each framework recommends for stability.
    A model may end with ``[steps, classes]`` (one prediction per time step, labels
    ``[steps]``); the loss is then the mean over samples and steps.

Sequences (the cells' equations are in docs/08-rnn.md and docs/09-lstm.md):
  * Token inputs are int32 ``[N, steps]``; id 0 is padding. An ``embedding`` layer
    turns ids into ``[steps, dim]`` vectors and (unless its ``padding`` is false:
    unpadded windows of a language model) starts a *mask* (id != 0) that
    follows the time axis through element-wise layers, per-step ``dense``,
    ``dropout`` and recurrent layers with ``return_sequences``, and is consumed by
    recurrent layers returning their last state and by global pooling. Padded
    steps never change a result: recurrent layers keep their state across them
    (and output zeros there), pooling ignores them (a max or mean over no real step is 0). A valid ``conv1d`` of kernel k
    shortens the mask by k - 1 (a window is real when all its steps are).
  * Recurrent layers (``rnn``, ``gru``, ``lstm``): canonical parameters
    ``kernel [in, G*units]``, ``recurrent_kernel [units, G*units]``,
    ``bias [G*units]`` and, for ``gru`` only, ``recurrent_bias [G*units]``, with
    gates in the order rnn: (h), gru: (r, z, n), lstm: (i, f, g, o) -- PyTorch's
    order. A bidirectional layer adds the same four with a ``backward_`` prefix;
    its outputs are ``[forward, backward]`` concatenated on the feature axis.
    The initial state is zero.
  * ``conv1d`` kernels are ``[kernel, in, filters]``; embeddings ``[vocab, dim]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Shape = tuple[int, ...]
ParamShapes = dict[str, Shape]

TASKS_DIR = Path(__file__).parent / "tasks"


class SpecError(ValueError):
    """A task spec is malformed or cannot work; the message says where and why."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- layers


class _Layer(_Frozen):
    name: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")

    def out_shape(self, shape: Shape) -> Shape:
        """Output shape (without batch) for an input of ``shape``."""
        return shape

    def param_shapes(self, shape: Shape) -> ParamShapes:
        """Parameter shapes of this layer alone, canonical layouts, keyed by short name."""
        return {}

    def children(self) -> list[list[Layer]]:
        """Nested layer sequences (blocks), empty for plain layers."""
        return []

    @property
    def has_params(self) -> bool:
        return False


def _need_rank(layer: _Layer, shape: Shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        raise SpecError(
            f"layer {layer.name or layer.type!r} ({layer.type}) needs {what}, "  # type: ignore[attr-defined]
            f"but its input has shape {list(shape)}"
        )


def _window_out(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


class Dense(_Layer):
    type: Literal["dense"]
    units: int = Field(gt=0)
    use_bias: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        # [steps, features]: the same dense layer applied at every step
        if len(shape) not in (1, 2):
            _need_rank(self, shape, 1, "a flat vector [features] (add a flatten layer before it)")
        return (*shape[:-1], self.units)

    def param_shapes(self, shape: Shape) -> ParamShapes:
        p = {"kernel": (shape[-1], self.units)}
        if self.use_bias:
            p["bias"] = (self.units,)
        return p

    @property
    def has_params(self) -> bool:
        return True


class Conv2D(_Layer):
    type: Literal["conv2d"]
    filters: int = Field(gt=0)
    kernel: int = Field(gt=0)
    stride: int = Field(default=1, gt=0)
    padding: Literal["valid", "same"] = "valid"
    use_bias: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        _need_rank(self, shape, 3, "an image [height, width, channels]")
        h, w, _ = shape
        oh = _window_out(h, self.kernel, self.stride, self.padding)
        ow = _window_out(w, self.kernel, self.stride, self.padding)
        if oh < 1 or ow < 1:
            raise SpecError(
                f"layer {self.name!r} (conv2d, kernel {self.kernel}) does not fit its "
                f"input of {h}x{w} pixels with padding {self.padding!r}"
            )
        return (oh, ow, self.filters)

    def param_shapes(self, shape: Shape) -> ParamShapes:
        p = {"kernel": (self.kernel, self.kernel, shape[2], self.filters)}
        if self.use_bias:
            p["bias"] = (self.filters,)
        return p

    @property
    def has_params(self) -> bool:
        return True


class _Pool2D(_Layer):
    size: int = Field(gt=0)
    stride: int | None = Field(default=None, gt=0)
    padding: Literal["valid", "same"] = "valid"

    @property
    def strides(self) -> int:
        return self.stride or self.size

    def out_shape(self, shape: Shape) -> Shape:
        _need_rank(self, shape, 3, "an image [height, width, channels]")
        h, w, c = shape
        oh = _window_out(h, self.size, self.strides, self.padding)
        ow = _window_out(w, self.size, self.strides, self.padding)
        if oh < 1 or ow < 1:
            raise SpecError(f"{self.type} of size {self.size} does not fit an input of {h}x{w}")
        return (oh, ow, c)


class MaxPool2D(_Pool2D):
    type: Literal["maxpool2d"]


class AvgPool2D(_Pool2D):
    type: Literal["avgpool2d"]


class Flatten(_Layer):
    type: Literal["flatten"]

    def out_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


class ReLU(_Layer):
    type: Literal["relu"]


class Sigmoid(_Layer):
    type: Literal["sigmoid"]


class Tanh(_Layer):
    type: Literal["tanh"]


class Dropout(_Layer):
    type: Literal["dropout"]
    rate: float = Field(ge=0.0, lt=1.0)


class Softmax(_Layer):
    """Probabilities over the last axis (for tasks that need them; losses take logits)."""

    type: Literal["softmax"]


class Reshape(_Layer):
    """Reshape each sample (NHWC order) to ``shape``."""

    type: Literal["reshape"]
    shape: tuple[int, ...] = Field(min_length=1)

    def out_shape(self, shape: Shape) -> Shape:
        if any(d <= 0 for d in self.shape) or math.prod(self.shape) != math.prod(shape):
            raise SpecError(
                f"layer {self.name!r} (reshape) cannot turn shape {list(shape)} "
                f"({math.prod(shape)} values) into {list(self.shape)}"
            )
        return tuple(self.shape)


class Embedding(_Layer):
    """Token ids ``[steps]`` (int, 0 = padding) to vectors ``[steps, dim]``."""

    type: Literal["embedding"]
    vocab: int = Field(gt=1)  # ids 0 .. vocab-1
    dim: int = Field(gt=0)
    # id 0 is padding and starts a mask; false for unpadded windows (a language model)
    padding: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        _need_rank(self, shape, 1, "token ids [steps]")
        return (shape[0], self.dim)

    def param_shapes(self, shape: Shape) -> ParamShapes:
        return {"embeddings": (self.vocab, self.dim)}

    @property
    def has_params(self) -> bool:
        return True


GATES = {"rnn": 1, "gru": 3, "lstm": 4}
GATE_ORDER = {"rnn": ("h",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


class _Recurrent(_Layer):
    units: int = Field(gt=0)
    bidirectional: bool = False
    return_sequences: bool = False  # False: the last (unpadded) step's state
    # True: step the cell in a loop the framework traces (a Python for loop in torch
    # and JAX, keras RNN(unroll=True)) instead of the fused/scanned layer
    unroll: bool = False

    @property
    def directions(self) -> tuple[str, ...]:
        return ("", "backward_") if self.bidirectional else ("",)

    def out_shape(self, shape: Shape) -> Shape:
        _need_rank(self, shape, 2, "a sequence [steps, features] (an embedding or conv1d output)")
        width = self.units * len(self.directions)
        return (shape[0], width) if self.return_sequences else (width,)

    def param_shapes(self, shape: Shape) -> ParamShapes:
        g = GATES[self.type] * self.units  # type: ignore[attr-defined]
        p: ParamShapes = {}
        for d in self.directions:
            p[f"{d}kernel"] = (shape[-1], g)
            p[f"{d}recurrent_kernel"] = (self.units, g)
            p[f"{d}bias"] = (g,)
            if self.type == "gru":  # type: ignore[attr-defined]
                p[f"{d}recurrent_bias"] = (g,)
        return p

    @property
    def has_params(self) -> bool:
        return True


class RNN(_Recurrent):
    """h' = tanh(x W + b + h U)"""

    type: Literal["rnn"]


class GRU(_Recurrent):
    """PyTorch's / Keras' ``reset_after`` GRU: n = tanh(x Wn + bn + r * (h Un + un))."""

    type: Literal["gru"]


class LSTM(_Recurrent):
    type: Literal["lstm"]


class Conv1D(_Layer):
    type: Literal["conv1d"]
    filters: int = Field(gt=0)
    kernel: int = Field(gt=0)
    stride: int = Field(default=1, gt=0)
    padding: Literal["valid", "same"] = "valid"
    use_bias: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        _need_rank(self, shape, 2, "a sequence [steps, features]")
        steps = _window_out(shape[0], self.kernel, self.stride, self.padding)
        if steps < 1:
            raise SpecError(
                f"layer {self.name!r} (conv1d, kernel {self.kernel}) does not fit its input "
                f"of {shape[0]} steps"
            )
        return (steps, self.filters)

    def param_shapes(self, shape: Shape) -> ParamShapes:
        p = {"kernel": (self.kernel, shape[1], self.filters)}
        if self.use_bias:
            p["bias"] = (self.filters,)
        return p

    @property
    def has_params(self) -> bool:
        return True


class _GlobalPool(_Layer):
    """Pooling over every axis but the last: time for sequences, height and width
    for images. On a masked sequence only the real steps count."""

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) < 2:
            _need_rank(self, shape, 2, "a sequence [steps, features] or an image")
        return (shape[-1],)


class GlobalMaxPool(_GlobalPool):
    type: Literal["global_maxpool"]


class GlobalAvgPool(_GlobalPool):
    type: Literal["global_avgpool"]


def _sequence_out(layers: tuple[Layer, ...], shape: Shape) -> Shape:
    for layer in layers:
        shape = layer.out_shape(shape)
    return shape


class Residual(_Layer):
    """``body(x) + shortcut(x)``; the shortcut is the identity unless layers are given
    (a projection, e.g. a 1x1 conv2d, when the body changes the shape)."""

    type: Literal["residual"]
    body: tuple[Layer, ...] = Field(min_length=1)
    shortcut: tuple[Layer, ...] = ()

    def out_shape(self, shape: Shape) -> Shape:
        body = _sequence_out(self.body, shape)
        short = _sequence_out(self.shortcut, shape)
        if body != short:
            raise SpecError(
                f"residual block {self.name!r}: the body gives shape {list(body)} but the "
                f"shortcut gives {list(short)}; add a projection in 'shortcut' "
                "(e.g. a conv2d with kernel 1) or make the body keep the shape"
            )
        return body

    def children(self) -> list[list[Layer]]:
        return [list(self.body), list(self.shortcut)]


class Parallel(_Layer):
    """Branches applied to the same input, merged by concatenation along channels."""

    type: Literal["parallel"]
    merge: Literal["concat"] = "concat"
    branches: tuple[tuple[Layer, ...], ...] = Field(min_length=1)

    def out_shape(self, shape: Shape) -> Shape:
        outs = [_sequence_out(b, shape) for b in self.branches]
        lead = {o[:-1] for o in outs}
        if len(lead) != 1:
            raise SpecError(
                f"parallel block {self.name!r}: branches give shapes "
                f"{[list(o) for o in outs]}; all but the last (channel) axis must agree "
                "(use padding 'same' or matching strides)"
            )
        return outs[0][:-1] + (sum(o[-1] for o in outs),)

    def children(self) -> list[list[Layer]]:
        return [list(b) for b in self.branches]


Layer = Annotated[
    Dense
    | Conv2D
    | MaxPool2D
    | AvgPool2D
    | Flatten
    | ReLU
    | Sigmoid
    | Tanh
    | Dropout
    | Softmax
    | Reshape
    | Embedding
    | RNN
    | GRU
    | LSTM
    | Conv1D
    | GlobalMaxPool
    | GlobalAvgPool
    | Residual
    | Parallel,
    Field(discriminator="type"),
]
LAYER_TYPES = (
    "dense",
    "conv2d",
    "maxpool2d",
    "avgpool2d",
    "flatten",
    "relu",
    "sigmoid",
    "tanh",
    "dropout",
    "softmax",
    "reshape",
    "embedding",
    "rnn",
    "gru",
    "lstm",
    "conv1d",
    "global_maxpool",
    "global_avgpool",
    "residual",
    "parallel",
)
RECURRENT = ("rnn", "gru", "lstm")
Residual.model_rebuild()
Parallel.model_rebuild()


def _named(layers: tuple[Layer, ...], counts: dict[str, int], seen: set[str]) -> tuple:
    """Give every layer a unique name (``<type>_<n>`` when the file gives none)."""
    out = []
    for layer in layers:
        update: dict[str, Any] = {}
        name = layer.name
        if name is None:
            counts[layer.type] = counts.get(layer.type, 0) + 1
            name = f"{layer.type}_{counts[layer.type]}"
            while name in seen:
                counts[layer.type] += 1
                name = f"{layer.type}_{counts[layer.type]}"
            update["name"] = name
        elif name in seen:
            raise SpecError(f"layer name {name!r} is used twice; layer names must be unique")
        seen.add(name)
        if isinstance(layer, Residual):
            update["body"] = _named(layer.body, counts, seen)
            update["shortcut"] = _named(layer.shortcut, counts, seen)
        elif isinstance(layer, Parallel):
            update["branches"] = tuple(_named(b, counts, seen) for b in layer.branches)
        out.append(layer.model_copy(update=update) if update else layer)
    return tuple(out)


# --------------------------------------------------------------------------- parts


class DataSpec(_Frozen):
    """Which data set, with which parameters, split how."""

    dataset: str
    params: dict[str, Any] = Field(default_factory=dict)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 0
    # the file-backed data set used instead when the user gives --data-dir
    real: str | None = None
    real_params: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(_Frozen):
    """Input shape (NHWC, no batch axis) and the layer graph."""

    input_shape: tuple[int, ...] | None = None  # None: taken from the data set
    layers: tuple[Layer, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _name_layers(self) -> ModelSpec:
        named = _named(self.layers, {}, set())
        object.__setattr__(self, "layers", named)
        return self


class Optimizer(_Frozen):
    # adamw: Adam with decoupled weight decay (p -= lr * weight_decay * p, apart from
    # the gradient), as torch.optim.AdamW, keras.optimizers.AdamW and optax.adamw
    name: Literal["sgd", "adam", "adamw"]
    learning_rate: float = Field(gt=0.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)  # sgd only
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)  # adam only
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    epsilon: float = Field(default=1e-8, gt=0.0)
    # sgd, adam: coupled L2 (added to the gradient), as torch.optim's weight_decay;
    # adamw: decoupled; either way on every parameter, biases included (torch's default)
    weight_decay: float = Field(default=0.0, ge=0.0)


class Augment(_Frozen):
    """Image augmentation drawn by the harness from the recipe's seed, so every
    framework trains on the same augmented batches."""

    shift: int = Field(default=0, ge=0)  # translate by up to this many pixels, zero fill
    flip: bool = False  # mirror left-right with probability 1/2


class Target(_Frozen):
    metric: str
    value: float


class RecipeSpec(_Frozen):
    # autoencoder: the target is the input itself, flattened (loss mse);
    # gan: ``model`` is the generator (noise -> sample), ``discriminator`` judges samples
    kind: Literal["supervised", "autoencoder", "gan"] = "supervised"
    loss: Literal["mse", "binary_cross_entropy", "softmax_cross_entropy"]
    optimizer: Optimizer
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    seed: int = 0
    drop_last: bool = True  # keeps every step's shape fixed: no retrace in graph modes
    eval_batch_size: int = Field(default=512, gt=0)
    eval_every: int = Field(default=1, gt=0)  # evaluate on the test set every n epochs
    target: Target | None = None
    report_weights: bool = False  # put the learned parameters in the record (tiny models)
    # put this layer's test-set outputs in the record (e.g. an autoencoder's 2-d code)
    record_layer: str | None = None
    # a language model: after training, sample this many characters (seeded from the
    # recipe's seed: every framework draws the same random numbers)
    generate: int = Field(default=0, ge=0)
    temperature: float = Field(default=1.0, gt=0.0)
    # regularization, usable by any task (see is_weight for what l1 covers)
    l1: float = Field(default=0.0, ge=0.0)  # loss += l1 * sum |w| over kernels/embeddings
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)  # softmax_cross_entropy
    clip_norm: float | None = Field(default=None, gt=0.0)  # gradients' global L2 norm
    augment: Augment | None = None

    @model_validator(mode="after")
    def _kind_fits(self) -> RecipeSpec:
        if self.kind == "autoencoder" and self.loss != "mse":
            raise SpecError(
                f"recipe.loss {self.loss!r}: an autoencoder recipe reconstructs its input, "
                "its loss must be 'mse'"
            )
        if self.label_smoothing and self.loss != "softmax_cross_entropy":
            raise SpecError(
                f"recipe.label_smoothing smooths class labels; loss {self.loss!r} has none "
                "(use it with 'softmax_cross_entropy')"
            )
        if self.kind == "gan" and self.loss != "binary_cross_entropy":
            raise SpecError(
                f"recipe.loss {self.loss!r}: a gan's discriminator tells real from generated, "
                "its loss must be 'binary_cross_entropy'"
            )
        return self


METRICS = {
    "mse": ("loss", "mse"),
    "binary_cross_entropy": ("loss", "accuracy"),
    "softmax_cross_entropy": ("loss", "accuracy"),
}


# a gan is judged by its samples (harness/metrics.py), not by a test loss
GAN_METRICS = ("modes_covered", "quality", "energy_distance")

FLOAT64_RTOL = 1e-9  # float64: frameworks differ by rounding only


class Tolerance(_Frozen):
    """How far two frameworks' float32 numbers may part in the equivalence check
    (relative to the tensor's largest magnitude), and why that much."""

    float32: float = Field(default=1e-5, gt=0.0, lt=1.0)
    why: str = "float32 sums in a different order in each framework"
    # the parameters after optimizer steps, where they need more than the forward pass,
    # loss and gradients (None: the same as float32), and why
    float32_steps: float | None = Field(default=None, gt=0.0, lt=1.0)
    steps_why: str = ""
    # the headline test metric after training, same mode and shared start: how far
    # apart (absolute, largest minus smallest) the frameworks may end, and why
    final: float | None = Field(default=None, gt=0.0)
    final_why: str = ""

    @model_validator(mode="after")
    def _steps_explained(self) -> Tolerance:
        if self.float32_steps is not None and not self.steps_why:
            raise SpecError("tolerance.float32_steps needs a steps_why saying why that much")
        if self.final is not None and not self.final_why:
            raise SpecError("tolerance.final needs a final_why saying why that much")
        return self


def _prefix_unnamed(layers: list, prefix: str) -> list:
    """Raw layer dicts with ``prefix`` on the names the file left out, so a second
    network's automatic names cannot clash with the first's."""
    out = []
    counts: dict[str, int] = {}
    for layer in layers:
        if isinstance(layer, dict) and "name" not in layer and isinstance(layer.get("type"), str):
            counts[layer["type"]] = counts.get(layer["type"], 0) + 1
            layer = {**layer, "name": f"{prefix}{layer['type']}_{counts[layer['type']]}"}
        out.append(layer)
    return out


class TaskSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = ""
    data: DataSpec
    model: ModelSpec
    recipe: RecipeSpec
    tolerance: Tolerance = Tolerance()
    discriminator: ModelSpec | None = None  # a gan's second network

    @model_validator(mode="before")
    @classmethod
    def _name_discriminator(cls, data: Any) -> Any:
        disc = data.get("discriminator") if isinstance(data, dict) else None
        if isinstance(disc, dict) and isinstance(disc.get("layers"), list):
            data = {
                **data,
                "discriminator": {**disc, "layers": _prefix_unnamed(disc["layers"], "d_")},
            }
        return data

    @model_validator(mode="after")
    def _networks_fit(self) -> TaskSpec:
        gan = self.recipe.kind == "gan"
        if gan and self.discriminator is None:
            raise SpecError("a gan recipe needs a [discriminator] with its layers")
        if not gan and self.discriminator is not None:
            raise SpecError(
                f"[discriminator] is only used by recipe.kind 'gan', not {self.recipe.kind!r}"
            )
        if gan:
            if self.model.input_shape is None or len(self.model.input_shape) != 1:
                raise SpecError(
                    "a gan's model (the generator) needs input_shape = [latent size]: "
                    "its input is noise, not the data"
                )
            g = {layer.name for layer, _, _ in walk(self.model.layers, self.model.input_shape)}
            d = {layer.name for layer, _, _ in _walk_names(self.discriminator.layers)}
            if g & d:
                raise SpecError(
                    f"layer names {sorted(g & d)} are used in both networks; names must be unique"
                )
        return self

    @property
    def metrics(self) -> tuple[str, ...]:
        if self.recipe.kind == "gan":
            return GAN_METRICS
        return METRICS[self.recipe.loss]

    def spec_hash(self) -> str:
        """Stable short hash of the whole spec (identifies comparable runs)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------- analysis


def map_layers(layers: tuple[Layer, ...], fn) -> tuple[Layer, ...]:
    """The layer tree with ``fn`` applied to every layer, blocks' insides first."""
    out = []
    for layer in layers:
        if isinstance(layer, Residual):
            layer = layer.model_copy(
                update={
                    "body": map_layers(layer.body, fn),
                    "shortcut": map_layers(layer.shortcut, fn),
                }
            )
        elif isinstance(layer, Parallel):
            layer = layer.model_copy(
                update={"branches": tuple(map_layers(b, fn) for b in layer.branches)}
            )
        out.append(fn(layer))
    return tuple(out)


def walk(layers: tuple[Layer, ...] | list[Layer], shape: Shape) -> list[tuple[Layer, Shape, Shape]]:
    """Every layer, depth first, with its input and output shape."""
    out: list[tuple[Layer, Shape, Shape]] = []
    for layer in layers:
        out_shape = layer.out_shape(shape)
        out.append((layer, shape, out_shape))
        for seq in layer.children():
            out.extend(walk(seq, shape))
        shape = out_shape
    return out


def is_weight(param: str) -> bool:
    """Whether ``l1`` counts a canonical parameter: kernels and embeddings, not biases."""
    return not param.rsplit(".", 1)[-1].endswith("bias")


def _walk_names(layers) -> list[tuple[Layer, None, None]]:
    """Every layer, depth first, without shapes (for names only)."""
    out = []
    for layer in layers:
        out.append((layer, None, None))
        for seq in layer.children():
            out.extend(_walk_names(seq))
    return out


def networks(spec: TaskSpec, data_shape: Shape) -> list[tuple[str, ModelSpec, Shape]]:
    """The networks a task trains, each with its input shape: the model on the data,
    or a gan's generator on noise and its discriminator on samples."""
    if spec.discriminator is None:
        return [("model", spec.model, tuple(data_shape))]
    latent = tuple(spec.model.input_shape or ())
    return [
        ("generator", spec.model, latent),
        ("discriminator", spec.discriminator, tuple(data_shape)),
    ]


def task_param_shapes(spec: TaskSpec, data_shape: Shape) -> dict[str, Shape]:
    """Canonical parameter names and shapes of every network of a task."""
    shapes: dict[str, Shape] = {}
    for _, model, shape in networks(spec, data_shape):
        shapes.update(param_shapes(model, shape))
    return shapes


def task_param_count(spec: TaskSpec, data_shape: Shape) -> int:
    return sum(math.prod(s) for s in task_param_shapes(spec, data_shape).values())


def task_layers(spec: TaskSpec, data_shape: Shape) -> list[tuple[Layer, Shape, Shape]]:
    """Every layer of every network, depth first, with input and output shapes."""
    return [
        item for _, model, shape in networks(spec, data_shape) for item in walk(model.layers, shape)
    ]


def param_shapes(model: ModelSpec, input_shape: Shape | None = None) -> dict[str, Shape]:
    """Canonical parameter names and shapes, in layer order."""
    shape = tuple(input_shape or model.input_shape or ())
    shapes: dict[str, Shape] = {}
    for layer, in_shape, _ in walk(model.layers, shape):
        for key, s in layer.param_shapes(in_shape).items():
            shapes[f"{layer.name}.{key}"] = s
    return shapes


def param_count(model: ModelSpec, input_shape: Shape | None = None) -> int:
    return sum(math.prod(s) for s in param_shapes(model, input_shape).values())


def output_shape(model: ModelSpec, input_shape: Shape | None = None) -> Shape:
    return _sequence_out(model.layers, tuple(input_shape or model.input_shape or ()))


# layers through which a sequence's mask passes unchanged
_MASK_KEEPS = ("relu", "sigmoid", "tanh", "softmax", "dropout", "dense")


def _masks(layers, masked: bool, out: dict[str, bool]) -> bool:
    for layer in layers:
        out[layer.name] = masked
        kind = layer.type
        if kind == "embedding":
            if masked:
                raise SpecError(f"layer {layer.name!r} (embedding) takes token ids, not vectors")
            masked = layer.padding
        elif kind in RECURRENT:
            masked = masked and layer.return_sequences
        elif kind in ("global_maxpool", "global_avgpool"):
            masked = False
        elif kind == "conv1d" and masked:
            if layer.padding != "valid" or layer.stride != 1:
                raise SpecError(
                    f"layer {layer.name!r} (conv1d) reads a padded sequence: it needs "
                    "padding 'valid' and stride 1, so that padding never enters a real window"
                )
        elif isinstance(layer, Residual):
            masked = _masks(layer.body, masked, out) | _masks(layer.shortcut, masked, out)
        elif isinstance(layer, Parallel):
            masked = any([_masks(b, masked, out) for b in layer.branches])
        elif masked and kind not in _MASK_KEEPS:
            raise SpecError(
                f"layer {layer.name!r} ({kind}) would mix the padded steps of a sequence "
                "into the result; reduce the sequence first with global_maxpool, "
                "global_avgpool or a recurrent layer without return_sequences"
            )
    return masked


def masked_inputs(model: ModelSpec) -> dict[str, bool]:
    """Layer name -> whether the layer's input is a padded sequence carrying a mask
    (it starts at an ``embedding``); raises SpecError where a mask cannot follow."""
    out: dict[str, bool] = {}
    if _masks(model.layers, False, out):
        raise SpecError(
            "the model ends on a padded sequence; per-step outputs need unpadded "
            "sequences (drop the embedding's padding or reduce the sequence first)"
        )
    return out


def _check_gan(spec: TaskSpec, data_shape: Shape) -> Shape:
    assert spec.discriminator is not None
    out = output_shape(spec.model, spec.model.input_shape)
    if out != tuple(data_shape):
        raise SpecError(
            f"task {spec.name!r}: the generator makes samples of shape {list(out)}, but "
            f"data set {spec.data.dataset!r} has samples of shape {list(data_shape)}"
        )
    judged = output_shape(spec.discriminator, data_shape)
    if judged != (1,):
        raise SpecError(
            f"task {spec.name!r}: the discriminator must end with one logit (dense, units 1), "
            f"not shape {list(judged)}"
        )
    return out


def check_model(spec: TaskSpec, input_shape: Shape) -> Shape:
    """Validate the model against the data's input shape; returns the output shape."""
    if spec.recipe.kind == "gan":
        return _check_gan(spec, input_shape)
    if spec.model.input_shape is not None and tuple(spec.model.input_shape) != tuple(input_shape):
        raise SpecError(
            f"task {spec.name!r}: model.input_shape {list(spec.model.input_shape)} does not "
            f"match data set {spec.data.dataset!r}, whose samples have shape {list(input_shape)}"
        )
    out = output_shape(spec.model, input_shape)
    masked_inputs(spec.model)
    per_step = len(out) == 2 and spec.recipe.loss == "softmax_cross_entropy"
    if spec.recipe.kind == "autoencoder" and out != (math.prod(input_shape),):
        raise SpecError(
            f"task {spec.name!r}: an autoencoder must output its input flattened, "
            f"[{math.prod(input_shape)}] values, but the model ends with {list(out)}"
        )
    names = {layer.name for layer, _, _ in walk(spec.model.layers, tuple(input_shape))}
    if spec.recipe.record_layer is not None and spec.recipe.record_layer not in names:
        raise SpecError(
            f"task {spec.name!r}: recipe.record_layer {spec.recipe.record_layer!r} is not a "
            f"layer of the model; its layers: {', '.join(sorted(names))}"
        )
    if len(out) != 1 and not per_step:
        raise SpecError(
            f"task {spec.name!r}: the model ends with shape {list(out)}; it must end with a "
            "flat vector (add flatten and dense layers), or with [steps, classes] for "
            "softmax_cross_entropy over every step"
        )
    return out


# --------------------------------------------------------------------------- loading


def _format_loc(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in LAYER_TYPES:  # the discriminator's tag in pydantic's path
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def _explain(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid task spec"]
    for e in err.errors():
        where = _format_loc(e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "union_tag_invalid":
            msg = (
                f"unknown layer type {e['input'].get('type')!r}; allowed: {', '.join(LAYER_TYPES)}"
            )
        elif e["type"] == "union_tag_not_found":
            msg = f"a layer needs a 'type' field; allowed: {', '.join(LAYER_TYPES)}"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        elif e["type"] == "literal_error":
            msg = f"{e['input']!r} is not allowed; {msg.lower()}"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_spec(data: dict[str, Any], source: str = "<spec>") -> TaskSpec:
    """Validate a spec dict; raises SpecError with a message naming source and field."""
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_explain(err, source)) from None
    except SpecError as err:
        raise SpecError(f"{source}: {err}") from None


def load_spec(path: str | Path) -> TaskSpec:
    """Read and validate a task TOML file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"task file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); a task file is TOML, "
            "saved as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(data, str(path))


def builtin_tasks() -> dict[str, Path]:
    """Built-in task names and their files."""
    return {p.stem: p for p in sorted(TASKS_DIR.glob("*.toml"))}


# What `rosetta run` and `rosetta check` do when no task is named: one task of each
# kind of model in the course (regression, classifier, CNN, RNN, TextCNN, autoencoder),
# short enough that the whole matrix runs in about 9 minutes on a 2-core CPU.
# `--tasks all` runs every built-in task (the ten others are variants and bigger or
# slower ones: xor, inception, resnet, rnn_names, char_lstm, gan, regularization...).
# Measured in one default run of all 48 cells of the earlier eight-task default (24 min):
# rnn_names' masked GRU took 349 s in TF's eager mode (Keras steps it op by op there)
# and the gan 150 s in TF eager and 258 s in JAX eager, more than the rest together.
DEFAULT_TASKS = (
    "linear_regression",
    "logistic_regression",
    "softmax_mlp",
    "lenet",
    "hello_rnn",
    "text_cnn",
    "autoencoder",
)
ALL_TASKS = "all"


def resolve_task(name_or_path: str) -> TaskSpec:
    """A built-in task by name, or a task file by path."""
    tasks = builtin_tasks()
    if name_or_path in tasks:
        return load_spec(tasks[name_or_path])
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_spec(name_or_path)
    raise SpecError(
        f"unknown task {name_or_path!r}; built-in tasks: {', '.join(tasks)} "
        "(or give the path of a .toml task file)"
    )

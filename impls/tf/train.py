"""Losses, optimizers, the recipe's regularization (l1, clipping, weight decay), and
the train / predict / gradient steps per mode, a gan's two-network step included.

Modes, as TensorFlow's guide "Writing a training loop from scratch" runs a
custom step: ``eager`` calls the Python step directly, ``graph`` wraps the same
step in ``tf.function``, ``xla`` in ``tf.function(jit_compile=True)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from harness.spec import Optimizer, RecipeSpec

Step = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


class SmoothedCrossentropy(keras.losses.CategoricalCrossentropy):
    """Softmax cross-entropy on class ids against smoothed targets
    ``(1 - eps) * onehot + eps / C``, C the number of classes (the logits' last axis).

    Keras' ``CategoricalCrossentropy(label_smoothing=eps)`` applies exactly that
    formula to one-hot targets (``y * (1 - eps) + eps / C``, in the run's dtype) and
    then ``tf.nn.softmax_cross_entropy_with_logits``; this class only turns the
    harness' class ids (``[N]`` or ``[N, steps]``) into one-hot rows first. Keras'
    ``Loss.__call__`` has already cast the ids to the loss' float dtype, exact for
    any class count, so they are cast back to integers.
    """

    def __init__(self, label_smoothing: float, dtype: str) -> None:
        super().__init__(from_logits=True, label_smoothing=label_smoothing, dtype=dtype)

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1]
        onehot = tf.one_hot(tf.cast(y_true, tf.int32), classes, dtype=y_pred.dtype)
        return super().call(onehot, y_pred)


def loss_fn(name: str, dtype: str = "float32", label_smoothing: float = 0.0) -> keras.losses.Loss:
    """The spec's loss as a Keras loss on logits, averaged over the batch (and steps).

    With ``from_logits=True`` Keras calls TensorFlow's fused, stable
    ``tf.nn.sigmoid_cross_entropy_with_logits`` and
    ``tf.nn.sparse_softmax_cross_entropy_with_logits`` (``label_smoothing``:
    ``softmax_cross_entropy_with_logits`` on smoothed targets, SmoothedCrossentropy).
    ``dtype`` matters: a Keras loss converts its inputs to its own dtype (floatx by
    default).
    """
    if name == "mse":
        return keras.losses.MeanSquaredError(dtype=dtype)
    if name == "binary_cross_entropy":
        return keras.losses.BinaryCrossentropy(from_logits=True, dtype=dtype)
    if name == "softmax_cross_entropy":
        if label_smoothing:
            return SmoothedCrossentropy(label_smoothing, dtype)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
    raise ValueError(f"unknown loss {name!r}")


@contextlib.contextmanager
def _floatx(dtype: str) -> Iterator[None]:
    old = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old)


def _exact(value: float) -> np.float64:
    """A hyper-parameter that stays exact in float64 runs.

    Keras' update steps do ``ops.cast(self.momentum, variable.dtype)``, i.e.
    ``tf.cast``, which turns a Python float into a float32 tensor before casting:
    0.9 would become 0.8999999762 in a float64 run. A numpy float64 (still a
    ``float``, so Keras' argument checks accept it) converts exactly.
    """
    return np.float64(value)


class SpecAdam(keras.optimizers.Adam):
    """Keras' Adam with the spec's (PyTorch's, optax's) update, eps after the bias correction;
    with ``weight_decay`` the spec's AdamW.

    Keras' ``Adam.update_step`` folds both bias corrections into the step size,
    ``p -= lr*sqrt(1 - b2^t)/(1 - b1^t) * m / (sqrt(v) + eps)`` (the "epsilon hat"
    form of Kingma & Ba), which is the spec's rule with ``eps / sqrt(1 - b2^t)`` in
    place of eps in ``sqrt(v_hat) + eps``: about 32x larger at step 1 with
    b2 = 0.999, so a weight whose gradient is within a few hundred eps moves less.
    This override applies the spec's formula, in torch.optim.Adam's order::

        m = m + (1 - b1) * (g - m);    v = v + (1 - b2) * (g*g - v)
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    Only ``update_step`` changes: the slot variables, ``apply``, the step counter and
    tf.function / XLA compilation are Keras' own. No amsgrad (the spec has none).

    AdamW. ``keras.optimizers.AdamW`` is Keras' Adam (same epsilon folding) given a
    ``weight_decay``; the decoupled decay is the base optimizer's
    ``_apply_weight_decay``, ``p -= p * wd * lr``, which ``apply`` runs on every
    variable (no exclusions unless asked: biases included) *before* ``update_step``,
    as ``torch.optim.AdamW`` does (``p *= 1 - lr*wd``, then the Adam step). So the
    spec's AdamW is this class with ``weight_decay`` set; it casts ``wd`` with
    ``tf.cast`` too, so a float64 run passes it as a numpy float64 (see _exact).
    """

    def __init__(self, **kwargs) -> None:
        if kwargs.get("amsgrad"):
            raise ValueError("SpecAdam has no amsgrad variant")
        super().__init__(**kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        ops = keras.ops
        # hyper-parameters are float64 numpy values (see _exact): 1 - b is computed
        # in float64, as PyTorch does in Python, then cast to the variable's dtype
        one_minus_b1 = ops.cast(1 - self.beta_1, dtype)
        one_minus_b2 = ops.cast(1 - self.beta_2, dtype)
        lr = ops.cast(learning_rate, dtype)
        eps = ops.cast(self.epsilon, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        correction1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        correction2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)

        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), one_minus_b1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), one_minus_b2))
        denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(correction2)), eps)
        self.assign_sub(variable, ops.multiply(ops.divide(lr, correction1), ops.divide(m, denom)))


def make_optimizer(opt: Optimizer, dtype: str = "float32") -> keras.optimizers.Optimizer:
    """A Keras optimizer for the spec's ``opt`` (coupled weight decay: see update).

    SGD: Keras' ``v = m*v - lr*g; p += v`` is PyTorch's ``v = m*v + g; p -= lr*v``
    scaled by -lr, the same steps for a constant learning rate.

    Adam: SpecAdam, Keras' Adam with the spec's ``p -= lr * m_hat / (sqrt(v_hat) + eps)``
    (eps added after the bias correction, as PyTorch and optax do). Keras' own
    Adam puts eps where it acts as ``eps / sqrt(1 - b2^t)`` in that formula (about
    32x larger at step 1 with b2=0.999): on lenet's first step a weight with
    |g| = 5e-7 moved 0.38*lr less than in PyTorch, the median weight 3e-5*lr.

    AdamW: SpecAdam with Keras' decoupled ``weight_decay`` (``p -= lr*wd*p`` before
    the Adam step, every parameter); Keras' AdamW would fold eps as its Adam does.
    """
    # Keras keeps the learning rate in a floatx variable: in a float64 run a float32
    # 0.01 would be 0.009999999776, so create it in the run's dtype
    with _floatx(dtype):
        lr = opt.learning_rate
        if opt.name == "sgd":
            return keras.optimizers.SGD(learning_rate=lr, momentum=_exact(opt.momentum))
        if opt.name in ("adam", "adamw"):
            decoupled = opt.name == "adamw" and opt.weight_decay > 0
            return SpecAdam(
                learning_rate=lr,
                beta_1=_exact(opt.beta1),
                beta_2=_exact(opt.beta2),
                epsilon=_exact(opt.epsilon),
                weight_decay=_exact(opt.weight_decay) if decoupled else None,
            )
    raise ValueError(f"unknown optimizer {opt.name!r}")


@dataclass(frozen=True)
class Net:
    """One network a task trains, with what its steps need.

    ``variables``: its trainable variables in the order of its canonical bindings
    (layers.bindings), the order its gradients come back in; ``penalized``: those
    whose parameters ``recipe.l1`` counts (layers.penalized); ``optimizer``: its
    own (a gan's two networks have one each, both built from the recipe).
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    variables: list
    penalized: list


def l1_norm(variables: list) -> tf.Tensor:
    """``sum |w|`` over ``variables``; the gradient of ``tf.abs`` is ``sign(w)``, 0 at
    w = 0, as the spec says."""
    return tf.add_n([tf.reduce_sum(tf.abs(v.value)) for v in variables])


def add_l1(value: tf.Tensor, net: Net, l1: float) -> tf.Tensor:
    """``value + l1 * sum |w|`` over the network's weights; ``value`` itself when l1
    is 0 (no op added to the graph)."""
    if not l1 or not net.penalized:
        return value
    # l1 is a Python float: multiplying a float64 tensor converts it exactly
    return value + l1 * l1_norm(net.penalized)


def dense(grads: list) -> list[tf.Tensor]:
    """Gradients as dense tensors.

    An embedding's gradient comes from its ``tf.gather`` as ``tf.IndexedSlices``:
    one row per token *occurrence*, duplicates not summed. Keras' optimizers apply
    it slice by slice (``scatter_add``), and its ops on slices act per slice, so
    Adam's ``square(g)`` would sum the squares of a repeated token's gradients
    instead of squaring their sum (and rows absent from the batch would skip the
    moments' decay). The spec's Adam, as PyTorch's and optax's, is dense.
    """
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def clip_by_global_norm(grads: list[tf.Tensor], clip_norm: float) -> list[tf.Tensor]:
    """Every gradient times ``min(1, c / ||g||)``, ``||g||`` the L2 norm of all of them.

    The exact factor, not Keras' ``global_clipnorm``: its ``clip_by_global_norm``
    computes ``c * min(1/||g||, 1/c)``, two roundings more (``49 * (1/49)`` is
    ``1 - 2**-53``: it can scale an unclipped gradient), and inside ``apply``, on
    gradients that already hold the coupled weight decay (see apply_gradients), which the
    spec adds after clipping. Nor torch's ``clip_grad_norm_``: ``c / (||g|| + 1e-6)``.
    A zero norm gives ``c / 0 = inf`` and the factor 1.
    """
    norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
    factor = tf.minimum(tf.ones_like(norm), clip_norm / norm)
    return [g * factor for g in grads]


def apply_gradients(net: Net, grads: list, recipe: RecipeSpec) -> None:
    """One optimizer step of ``net`` on the gradients of its objective (l1 included):
    clip them (recipe.clip_norm), add the coupled weight decay of sgd / adam
    (``g + wd * p``, torch.optim's weight_decay; Keras' own weight_decay argument is
    decoupled, which is adamw's, inside the optimizer), then the optimizer's update."""
    grads = dense(grads)
    if recipe.clip_norm is not None:
        grads = clip_by_global_norm(grads, recipe.clip_norm)
    opt = recipe.optimizer
    if opt.weight_decay and opt.name != "adamw":
        wd = opt.weight_decay
        grads = [g + wd * v.value for g, v in zip(grads, net.variables, strict=True)]
    net.optimizer.apply(grads, net.variables)


def compile_for_mode(fn: Callable, mode: str) -> Callable:
    """``fn`` as the mode runs it: itself, a ``tf.function``, or one compiled by XLA."""
    if mode == "eager":
        return fn
    if mode in ("graph", "xla"):
        return tf.function(fn, jit_compile=mode == "xla")
    raise ValueError(f"unknown mode {mode!r}; the tf backend has eager, graph, xla")


def objective(net: Net, recipe: RecipeSpec, dtype: str) -> Callable:
    """``(x, y, training) -> loss(y, model(x)) + l1 * sum |w|``: what the step minimizes."""
    loss = loss_fn(recipe.loss, dtype, recipe.label_smoothing)

    def value(x: tf.Tensor, y: tf.Tensor, training: bool) -> tf.Tensor:
        return add_l1(loss(y, net.model(x, training=training)), net, recipe.l1)

    return value


def make_train_step(net: Net, recipe: RecipeSpec, dtype: str, mode: str) -> Step:
    """One optimizer step on (x, y); returns the loss (l1 term included) computed
    before the update. Call it with tensors of a fixed shape so it traces once."""
    forward_loss = objective(net, recipe, dtype)

    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            value = forward_loss(x, y, training=True)
        apply_gradients(net, tape.gradient(value, net.variables), recipe)
        return value

    return compile_for_mode(train_step, mode)


def make_predict(model: keras.Model, mode: str) -> Callable:
    """Inference-mode outputs (dropout off) for x."""

    def predict(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return compile_for_mode(predict, mode)


def make_loss_and_grads(net: Net, recipe: RecipeSpec, dtype: str, mode: str) -> Callable:
    """(loss, gradients w.r.t. ``net.variables``) in inference mode, without an update;
    the loss has the l1 term, the gradients are not clipped (clipping is the step's)."""
    forward_loss = objective(net, recipe, dtype)

    def loss_and_grads(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            value = forward_loss(x, y, training=False)
        return value, dense(tape.gradient(value, net.variables))

    return compile_for_mode(loss_and_grads, mode)


# --------------------------------------------------------------------------- gan


def gan_objectives(
    gen: Net, disc: Net, recipe: RecipeSpec, dtype: str
) -> tuple[Callable, Callable]:
    """A gan's two objectives on logits, each plus its own network's l1 term:

    - ``d_objective(x, fake, training)``: ``mean BCE(D(x), 1) + mean BCE(D(fake), 0)``,
      a sum of two means;
    - ``g_objective(fake, training)``: ``mean BCE(D(fake), 1)``, the non-saturating
      loss, with D as it is when called.
    """
    bce = loss_fn("binary_cross_entropy", dtype)

    def d_objective(x: tf.Tensor, fake: tf.Tensor, training: bool) -> tf.Tensor:
        real = disc.model(x, training=training)
        judged = disc.model(fake, training=training)
        value = bce(tf.ones_like(real), real) + bce(tf.zeros_like(judged), judged)
        return add_l1(value, disc, recipe.l1)

    def g_objective(fake: tf.Tensor, training: bool) -> tf.Tensor:
        judged = disc.model(fake, training=training)
        return add_l1(bce(tf.ones_like(judged), judged), gen, recipe.l1)

    return d_objective, g_objective


def make_gan_train_step(gen: Net, disc: Net, recipe: RecipeSpec, dtype: str, mode: str) -> Step:
    """A gan's two updates on (real samples x, noise z), one function (one graph in
    graph modes); returns (discriminator loss, generator loss), each before its update.

    The generator runs once: its tape records ``G(z)``, pauses for the
    discriminator's step (whose own tape sees the samples as constants: no gradient
    reaches G), then records the *updated* discriminator judging the same samples.
    The reads of D's variables there come after its update in graph modes too:
    tf.function orders stateful ops on a resource as the Python code does.
    """
    d_objective, g_objective = gan_objectives(gen, disc, recipe, dtype)

    def gan_step(x: tf.Tensor, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as g_tape:
            fake = gen.model(z, training=True)
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    d_loss = d_objective(x, fake, training=True)
                apply_gradients(disc, d_tape.gradient(d_loss, disc.variables), recipe)
            g_loss = g_objective(fake, training=True)
        apply_gradients(gen, g_tape.gradient(g_loss, gen.variables), recipe)
        return d_loss, g_loss

    return compile_for_mode(gan_step, mode)


def make_gan_loss_and_grads(
    gen: Net, disc: Net, recipe: RecipeSpec, dtype: str, mode: str
) -> Callable:
    """(discriminator loss, G's gradients of the generator loss + D's of its own loss),
    at the current weights, in inference mode, without an update."""
    d_objective, g_objective = gan_objectives(gen, disc, recipe, dtype)

    def loss_and_grads(x: tf.Tensor, z: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape(persistent=True) as tape:
            fake = gen.model(z, training=False)
            d_loss = d_objective(x, fake, training=False)
            g_loss = g_objective(fake, training=False)
        grads = tape.gradient(g_loss, gen.variables) + tape.gradient(d_loss, disc.variables)
        del tape  # a persistent tape holds its tensors until dropped
        return d_loss, dense(grads)

    return compile_for_mode(loss_and_grads, mode)


# --------------------------------------------------------------------------- counters


def tracing_count(fn: Callable) -> int:
    """How many times TensorFlow traced ``fn`` (``tf.function``'s own counter: one
    per new input signature); 0 for a plain Python function (eager mode)."""
    counter = getattr(fn, "experimental_get_tracing_count", None)
    return counter() if counter is not None else 0

"""Losses, the optimizer, and the train / predict / gradient steps per mode.

Modes, as TensorFlow's guide "Writing a training loop from scratch" runs a
custom step: ``eager`` calls the Python step directly, ``graph`` wraps the same
step in ``tf.function``, ``xla`` in ``tf.function(jit_compile=True)``.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterator

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from harness.spec import Optimizer  # noqa: E402

Step = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def loss_fn(name: str, dtype: str = "float32") -> keras.losses.Loss:
    """The spec's loss as a Keras loss on logits, averaged over the batch.

    With ``from_logits=True`` Keras calls TensorFlow's fused, stable
    ``tf.nn.sigmoid_cross_entropy_with_logits`` and
    ``tf.nn.sparse_softmax_cross_entropy_with_logits``. ``dtype`` matters:
    a Keras loss converts its inputs to its own dtype (floatx by default).
    """
    if name == "mse":
        return keras.losses.MeanSquaredError(dtype=dtype)
    if name == "binary_cross_entropy":
        return keras.losses.BinaryCrossentropy(from_logits=True, dtype=dtype)
    if name == "softmax_cross_entropy":
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
    """Keras' Adam with the spec's (PyTorch's, optax's) update, eps after the bias correction.

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
    """A Keras optimizer for the spec's ``opt`` (weight decay: see make_train_step).

    SGD: Keras' ``v = m*v - lr*g; p += v`` is PyTorch's ``v = m*v + g; p -= lr*v``
    scaled by -lr, the same steps for a constant learning rate.

    Adam: SpecAdam, Keras' Adam with the spec's ``p -= lr * m_hat / (sqrt(v_hat) + eps)``
    (eps added after the bias correction, as PyTorch and optax do). Keras' own
    Adam puts eps where it acts as ``eps / sqrt(1 - b2^t)`` in that formula (about
    32x larger at step 1 with b2=0.999): on lenet's first step a weight with
    |g| = 5e-7 moved 0.38*lr less than in PyTorch, the median weight 3e-5*lr.
    """
    # Keras keeps the learning rate in a floatx variable: in a float64 run a float32
    # 0.01 would be 0.009999999776, so create it in the run's dtype
    with _floatx(dtype):
        lr = opt.learning_rate
        if opt.name == "sgd":
            return keras.optimizers.SGD(learning_rate=lr, momentum=_exact(opt.momentum))
        if opt.name == "adam":
            return SpecAdam(
                learning_rate=lr, beta_1=_exact(opt.beta1), beta_2=_exact(opt.beta2),
                epsilon=_exact(opt.epsilon),
            )  # fmt: skip
    raise ValueError(f"unknown optimizer {opt.name!r}")


def compile_step(fn: Callable, mode: str) -> Callable:
    """``fn`` as the mode runs it: itself, a ``tf.function``, or one compiled by XLA."""
    if mode == "eager":
        return fn
    if mode in ("graph", "xla"):
        return tf.function(fn, jit_compile=mode == "xla")
    raise ValueError(f"unknown mode {mode!r}; the tf backend has eager, graph, xla")


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


def make_train_step(
    model: keras.Model,
    loss: keras.losses.Loss,
    optimizer: keras.optimizers.Optimizer,
    weight_decay: float,
    mode: str,
    traces: Counter,
) -> Step:
    """One optimizer step on (x, y); returns the loss computed before the update.

    ``traces["train_step"]`` counts Python executions of the body, i.e. traces
    in graph modes. Call it with tensors of a fixed shape so it traces once.
    """
    variables = model.trainable_variables

    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        traces["train_step"] += 1
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = dense(tape.gradient(value, variables))
        if weight_decay:
            # the spec's coupled L2 (torch.optim's weight_decay); Keras' own
            # weight_decay argument is decoupled (AdamW-style), so not used
            grads = [g + weight_decay * v.value for g, v in zip(grads, variables, strict=True)]
        optimizer.apply(grads, variables)
        return value

    return compile_step(train_step, mode)


def make_predict(model: keras.Model, mode: str, traces: Counter) -> Callable:
    """Inference-mode outputs (dropout off) for x."""

    def predict(x: tf.Tensor) -> tf.Tensor:
        traces["predict"] += 1
        return model(x, training=False)

    return compile_step(predict, mode)


def make_grad_step(
    model: keras.Model, loss: keras.losses.Loss, variables: list, mode: str, traces: Counter
) -> Callable:
    """(loss, gradients w.r.t. ``variables``) in inference mode, without an update."""

    def grad_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        traces["grad_step"] += 1
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=False))
        return value, dense(tape.gradient(value, variables))

    return compile_step(grad_step, mode)

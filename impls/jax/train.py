"""Losses, the Optax optimizer, and the pure step functions for each mode.

Every step is a pure function of pytrees, ``(params, opt_state, key, x, y) ->
(params, opt_state, key, loss)``, that rebuilds the module with ``nnx.merge``
inside: Flax's "functional training loop", which keeps the NNX object-graph
traversal out of the hot path. Mode "eager" calls it as is (op-by-op dispatch);
mode "graph" calls ``jax.jit`` of the very same function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import optax
from flax import nnx

from harness.spec import Optimizer
from impls.jax import layers

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Traces = dict[str, int]


def _mse(out: jax.Array, y: jax.Array) -> jax.Array:
    # squared_error, not l2_loss: l2_loss carries a factor 1/2
    return optax.squared_error(out, y).mean()


def _binary_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(logits, y).mean()


def _softmax_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


_LOSSES: dict[str, LossFn] = {
    "mse": _mse,
    "binary_cross_entropy": _binary_cross_entropy,
    "softmax_cross_entropy": _softmax_cross_entropy,
}


def loss_fn(name: str) -> LossFn:
    """The spec's loss on raw outputs (logits), averaged over the batch."""
    return _LOSSES[name]


def make_optimizer(opt: Optimizer) -> optax.GradientTransformation:
    """Optax's SGD or Adam; weight decay is coupled L2 added to the gradient.

    ``optax.sgd``'s momentum keeps ``v = m*v + g`` and steps ``-lr*v``, which is
    torch.optim.SGD's convention; ``add_decayed_weights`` before it adds
    ``wd*p`` to the gradient, as torch's ``weight_decay`` does (``optax.adamw``
    would be the decoupled kind).
    """
    if opt.name == "sgd":
        # momentum None: plain SGD keeps no trace buffer at all
        tx = optax.sgd(opt.learning_rate, momentum=opt.momentum or None)
    else:
        tx = optax.adam(opt.learning_rate, b1=opt.beta1, b2=opt.beta2, eps=opt.epsilon)
    if opt.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(opt.weight_decay), tx)
    return tx


def _for_mode(fn: Callable, mode: str, traces: Traces, name: str, donate=()) -> Callable:
    """``fn`` as is in eager mode; ``jax.jit(fn)`` in graph mode, counting traces."""
    if mode == "eager":
        return fn
    if mode != "graph":
        raise ValueError(f"JAX has modes 'eager' and 'graph', not {mode!r}")

    def counted(*args):
        traces[name] = traces.get(name, 0) + 1  # Python runs this only while tracing
        return fn(*args)

    return jax.jit(counted, donate_argnums=donate)


def _objective(graphdef: nnx.GraphDef, loss: LossFn, deterministic: bool) -> Callable:
    def objective(params, x, y, dropout_key=None):
        model = nnx.merge(graphdef, params)
        # built here, inside the grad trace: an Rngs made outside cannot be advanced in it
        rngs = None if dropout_key is None else nnx.Rngs(dropout=dropout_key)
        return loss(model(x, deterministic=deterministic, rngs=rngs), y)

    return objective


def make_train_step(
    graphdef: nnx.GraphDef, loss_name: str, tx: optax.GradientTransformation,
    mode: str, traces: Traces,
) -> Callable:  # fmt: skip
    """``(params, opt_state, key, x, y) -> (params, opt_state, key, loss)``.

    Dropout is on; its key is split off the carried ``key`` each step. In graph
    mode the params, optimizer state and key buffers are donated, as JAX
    recommends for state that a step replaces: XLA may update them in place.
    """
    objective = _objective(graphdef, loss_fn(loss_name), deterministic=False)

    def train_step(params, opt_state, key, x, y):
        key, dropout_key = jax.random.split(key)
        loss, grads = jax.value_and_grad(objective)(params, x, y, dropout_key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss

    return _for_mode(train_step, mode, traces, "train_step", donate=(0, 1, 2))


def make_predict(graphdef: nnx.GraphDef, mode: str, traces: Traces) -> Callable:
    """``(params, x) -> outputs`` with dropout off."""

    def predict(params, x):
        return nnx.merge(graphdef, params)(x, deterministic=True)

    return _for_mode(predict, mode, traces, "predict")


def make_activations(
    graphdef: nnx.GraphDef, names: Sequence[str], mode: str, traces: Traces
) -> Callable:
    """``(params, x) -> {layer name: output}`` with dropout off, for the equivalence
    check: its own function (jitted in graph mode, as predict is), not a hook on
    the train step. ``names`` is the spec's ``walk`` order, which the result keeps
    (a jitted dict comes back with its keys sorted)."""

    def activations(params, x):
        return layers.activations(nnx.merge(graphdef, params), x)

    fn = _for_mode(activations, mode, traces, "activations")

    def in_walk_order(params, x):
        outs = fn(params, x)
        if set(outs) != set(names):
            raise RuntimeError(f"layer outputs {sorted(outs)} are not the spec's {sorted(names)}")
        return {name: outs[name] for name in names}

    return in_walk_order


def make_loss_and_grads(
    graphdef: nnx.GraphDef, loss_name: str, mode: str, traces: Traces
) -> Callable:
    """``(params, x, y) -> (loss, grads)`` with dropout off; grads shaped like params."""
    grad_fn = jax.value_and_grad(_objective(graphdef, loss_fn(loss_name), deterministic=True))
    return _for_mode(grad_fn, mode, traces, "loss_and_grads")

"""Losses, the Optax optimizer, and the pure step functions for each mode.

Every step is a pure function of pytrees, ``(params, opt_state, key, x, y) ->
(params, opt_state, key, loss)``, that rebuilds the modules with ``nnx.merge``
inside: Flax's "functional training loop", which keeps the NNX object-graph
traversal out of the hot path. ``params`` and ``opt_state`` are dicts keyed by
network role (``harness.spec.networks``: ``"model"``, or a gan's
``"generator"`` and ``"discriminator"``), one ``nnx.State`` and one optimizer
state per network. Mode "eager" calls the step as is (op-by-op dispatch); mode
"graph" calls ``jax.jit`` of the very same function.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from harness.spec import Optimizer, RecipeSpec
from impls.jax import layers
from impls.jax.layers import Path

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Traces = dict[str, int]


def _mse(out: jax.Array, y: jax.Array) -> jax.Array:
    # squared_error, not l2_loss: l2_loss carries a factor 1/2
    return optax.squared_error(out, y).mean()


def _binary_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(logits, y).mean()


def _softmax_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _smoothed_cross_entropy(logits: jax.Array, y: jax.Array, *, eps: float) -> jax.Array:
    # smooth_labels: (1 - eps) * onehot + eps / C, C read off the last axis
    targets = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype), eps)
    return optax.softmax_cross_entropy(logits, targets).mean()


_LOSSES: dict[str, LossFn] = {
    "mse": _mse,
    "binary_cross_entropy": _binary_cross_entropy,
    "softmax_cross_entropy": _softmax_cross_entropy,
}


def loss_fn(name: str, label_smoothing: float = 0.0) -> LossFn:
    """The spec's loss on raw outputs (logits), averaged over the batch (and steps).

    ``label_smoothing`` eps (softmax cross-entropy only, the spec checks) trains on
    ``(1 - eps) * onehot + eps / C``; 0 keeps the integer-label form, which never
    builds the one-hot matrix.
    """
    if label_smoothing:
        return functools.partial(_smoothed_cross_entropy, eps=label_smoothing)
    return _LOSSES[name]


def make_optimizer(opt: Optimizer, clip_norm: float | None = None) -> optax.GradientTransformation:
    """Optax's SGD, Adam or AdamW, after global-norm clipping if asked.

    ``optax.sgd``'s momentum keeps ``v = m*v + g`` and steps ``-lr*v``, which is
    torch.optim.SGD's convention. For sgd and adam, ``add_decayed_weights``
    before the optimizer adds ``wd*p`` to the gradient, as torch's
    ``weight_decay`` does; ``optax.adamw`` is the decoupled kind, ``-lr*(adam
    step + wd*p)``, which is torch.optim.AdamW's ``p*(1 - lr*wd) - lr*step``
    (both decay the old ``p``). Its ``weight_decay`` defaults to 1e-4, so it is
    always passed. Optax's Adam puts epsilon outside the square root, as torch.

    ``clip_by_global_norm`` comes first, so it sees the objective's gradient
    and the coupled decay is added after it (torch's order: clip, then step).
    It scales by ``c / ||g||`` exactly, ``(g / ||g||) * c`` with no epsilon
    (unlike ``torch.nn.utils.clip_grad_norm_``'s ``c / (||g|| + 1e-6)``).
    """
    if opt.name == "sgd":
        # momentum None: plain SGD keeps no trace buffer at all
        tx = optax.sgd(opt.learning_rate, momentum=opt.momentum or None)
    elif opt.name == "adam":
        tx = optax.adam(opt.learning_rate, b1=opt.beta1, b2=opt.beta2, eps=opt.epsilon)
    else:
        tx = optax.adamw(
            opt.learning_rate,
            b1=opt.beta1,
            b2=opt.beta2,
            eps=opt.epsilon,
            weight_decay=opt.weight_decay,
        )
    if opt.weight_decay and opt.name != "adamw":
        tx = optax.chain(optax.add_decayed_weights(opt.weight_decay), tx)
    if clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    return tx


@dataclasses.dataclass(frozen=True)
class Net:
    """One network of the task, as the steps need it: its static graph, and the
    paths of the parameters that ``recipe.l1`` counts (``harness.spec.is_weight``)."""

    graphdef: nnx.GraphDef
    weights: frozenset[Path]

    def __call__(self, params, x, *, key: jax.Array | None = None):
        """The network on ``x``; dropout on when a ``key`` is given, off otherwise."""
        model = nnx.merge(self.graphdef, params)
        # built here, inside the trace: an Rngs made outside cannot be advanced in it
        rngs = None if key is None else nnx.Rngs(dropout=key)
        return model(x, deterministic=key is None, rngs=rngs)


def l1_norm(params: nnx.State, weights: frozenset[Path]) -> jax.Array:
    """``sum |w|`` over the parameters at ``weights`` (paths in ``params``).

    Written ``w * stop_gradient(sign(w))``: the same value (multiplying by +-1 or 0
    is exact) with the gradient ``sign(w)``, 0 at 0 as the spec says. ``jnp.abs``
    would give 1 there: JAX differentiates |w| at 0 as the right-hand slope.
    """
    total = 0.0  # a weak Python float: the sum keeps the parameters' dtype
    for path, var in nnx.to_flat_state(params):
        if path in weights:
            w = var.get_value() if isinstance(var, nnx.Variable) else var
            total = total + jnp.sum(w * jax.lax.stop_gradient(jnp.sign(w)))
    return total


def add_l1(objective: Callable, l1: float, weights: frozenset[Path]) -> Callable:
    """``objective(params, ...) + l1 * sum |w|``; the objective itself when l1 is 0."""
    if not l1:
        return objective

    def penalized(params, *args, **kwargs):
        return objective(params, *args, **kwargs) + l1 * l1_norm(params, weights)

    return penalized


def compile_for_mode(fn: Callable, mode: str, traces: Traces, name: str, donate=()) -> Callable:
    """``fn`` as is in eager mode; ``jax.jit(fn)`` in graph mode, counting traces."""
    if mode == "eager":
        return fn
    if mode != "graph":
        raise ValueError(f"JAX has modes 'eager' and 'graph', not {mode!r}")

    # wraps: the jitted function keeps fn's name, which JAX's compile logs and
    # monitoring events (fun_name) report
    @functools.wraps(fn)
    def counted(*args):
        traces[name] = traces.get(name, 0) + 1  # Python runs this only while tracing
        return fn(*args)

    return jax.jit(counted, donate_argnums=donate)


# --------------------------------------------------------------------------- supervised


def objective(net: Net, r: RecipeSpec) -> Callable:
    """``(params, x, y, key=None) -> loss`` of the recipe, l1 term included."""
    loss = loss_fn(r.loss, r.label_smoothing)

    def forward_loss(params, x, y, key=None):
        return loss(net(params, x, key=key), y)

    return add_l1(forward_loss, r.l1, net.weights)


def make_train_step(
    net: Net, r: RecipeSpec, tx: optax.GradientTransformation, mode: str, traces: Traces
) -> Callable:
    """``(params, opt_state, key, x, y) -> (params, opt_state, key, loss)``.

    Dropout is on; its key is split off the carried ``key`` each step. In graph
    mode the params, optimizer state and key buffers are donated, as JAX
    recommends for state that a step replaces: XLA may update them in place.
    """
    forward_loss = objective(net, r)

    def train_step(params, opt_state, key, x, y):
        key, dropout_key = jax.random.split(key)
        p = params["model"]
        loss, grads = jax.value_and_grad(forward_loss)(p, x, y, dropout_key)
        updates, opt = tx.update(grads, opt_state["model"], p)
        return {"model": optax.apply_updates(p, updates)}, {"model": opt}, key, loss

    return compile_for_mode(train_step, mode, traces, "train_step", donate=(0, 1, 2))


def make_predict(net: Net, role: str, mode: str, traces: Traces) -> Callable:
    """``(params, x) -> outputs`` of the network ``role`` with dropout off."""

    def predict(params, x):
        return net(params[role], x)

    return compile_for_mode(predict, mode, traces, "predict")


def make_loss_and_grads(net: Net, r: RecipeSpec, mode: str, traces: Traces) -> Callable:
    """``(params, x, y) -> (loss, grads)`` with dropout off; grads shaped like params."""
    grad_fn = jax.value_and_grad(objective(net, r))

    def loss_and_grads(params, x, y):
        loss, grads = grad_fn(params["model"], x, y)
        return loss, {"model": grads}

    return compile_for_mode(loss_and_grads, mode, traces, "loss_and_grads")


def make_activations(
    nets: dict[str, Net], names: Sequence[str], mode: str, traces: Traces
) -> Callable:
    """``(params, x) -> {layer name: output}`` with dropout off, for the equivalence
    check: its own function (jitted in graph mode, as predict is), not a hook on
    the train step. Networks run in order, each on the last one's output (a gan's
    discriminator on the generator's samples). ``names`` is the order of
    ``harness.spec.task_layers``, which the result keeps (a jitted dict comes back
    with its keys sorted)."""

    def activations(params, x):
        outs: dict[str, jax.Array] = {}
        for role, net in nets.items():
            model = nnx.merge(net.graphdef, params[role])
            outs.update(layers.activations(model, x))
            x = outs[model.order[-1]]  # the network's output: its last top-level layer's
        return outs

    fn = compile_for_mode(activations, mode, traces, "activations")

    def in_walk_order(params, x):
        outs = fn(params, x)
        if set(outs) != set(names):
            raise RuntimeError(f"layer outputs {sorted(outs)} are not the spec's {sorted(names)}")
        return {name: outs[name] for name in names}

    return in_walk_order


# --------------------------------------------------------------------------- gan


def gan_objectives(g: Net, d: Net, r: RecipeSpec):
    """The two objectives of a gan, l1 terms included.

    ``d_objective(d_params, x, fake, keys)``: ``mean BCE(D(x), 1) + mean
    BCE(D(fake), 0)``, with ``fake`` a value (the generator's samples, detached
    by construction: nothing here differentiates through them).
    ``g_objective(fake, d_params, key)``: ``mean BCE(D(fake), 1)``, the
    non-saturating generator loss, as a function of the samples; the generator's
    gradient is its vjp (see ``_generator_grads``).
    """
    bce = loss_fn("binary_cross_entropy")

    def d_objective(dp, x, fake, keys=(None, None)):
        real_logits, fake_logits = d(dp, x, key=keys[0]), d(dp, fake, key=keys[1])
        return bce(real_logits, jnp.ones_like(real_logits)) + bce(
            fake_logits, jnp.zeros_like(fake_logits)
        )

    def g_objective(fake, dp, key=None):
        logits = d(dp, fake, key=key)
        return bce(logits, jnp.ones_like(logits))

    return add_l1(d_objective, r.l1, d.weights), g_objective


def _generator_grads(g: Net, r: RecipeSpec, gp, g_vjp, g_objective, fake, *args):
    """The generator's loss and gradients: ``g_objective``'s gradient at the
    samples, pulled back through the generator's forward pass (``g_vjp``: the one
    forward that also made the discriminator's samples, as torch reuses its
    graph), plus the gradient of the generator's own l1 term."""
    loss, at_fake = jax.value_and_grad(g_objective)(fake, *args)
    (grads,) = g_vjp(at_fake)
    if r.l1:
        penalty, penalty_grads = jax.value_and_grad(lambda p: r.l1 * l1_norm(p, g.weights))(gp)
        loss, grads = loss + penalty, jax.tree.map(jnp.add, grads, penalty_grads)
    return loss, grads


def make_gan_train_step(
    g: Net, d: Net, r: RecipeSpec, tx: optax.GradientTransformation, mode: str, traces: Traces
) -> Callable:
    """``(params, opt_state, key, x, z) -> (params, opt_state, key, (d_loss, g_loss))``.

    The discriminator steps first on real ``x`` and the generator's samples of
    ``z``; then the generator steps against the *updated* discriminator with the
    same samples. Each network has its own optimizer state (one ``tx``, built
    from the recipe, used on each), so clipping is per network. Each loss is
    taken before its own update. One function: in graph mode both updates are
    one jitted program, the buffers donated as in the supervised step.
    """
    d_objective, g_objective = gan_objectives(g, d, r)

    def train_step(params, opt_state, key, x, z):
        key, g_key, real_key, fake_key, judge_key = jax.random.split(key, 5)
        gp, dp = params["generator"], params["discriminator"]
        fake, g_vjp = jax.vjp(lambda p: g(p, z, key=g_key), gp)
        d_loss, d_grads = jax.value_and_grad(d_objective)(dp, x, fake, (real_key, fake_key))
        updates, d_opt = tx.update(d_grads, opt_state["discriminator"], dp)
        dp = optax.apply_updates(dp, updates)
        g_loss, g_grads = _generator_grads(g, r, gp, g_vjp, g_objective, fake, dp, judge_key)
        updates, g_opt = tx.update(g_grads, opt_state["generator"], gp)
        params = {"generator": optax.apply_updates(gp, updates), "discriminator": dp}
        return params, {"generator": g_opt, "discriminator": d_opt}, key, (d_loss, g_loss)

    return compile_for_mode(train_step, mode, traces, "train_step", donate=(0, 1, 2))


def make_gan_loss_and_grads(g: Net, d: Net, r: RecipeSpec, mode: str, traces: Traces) -> Callable:
    """``(params, x, z) -> (d_loss, grads)`` at the current weights, dropout off:
    the discriminator's gradients of its loss and the generator's of its loss
    (against the current discriminator)."""
    d_objective, g_objective = gan_objectives(g, d, r)

    def loss_and_grads(params, x, z):
        gp, dp = params["generator"], params["discriminator"]
        fake, g_vjp = jax.vjp(lambda p: g(p, z), gp)
        d_loss, d_grads = jax.value_and_grad(d_objective)(dp, x, fake)
        _, g_grads = _generator_grads(g, r, gp, g_vjp, g_objective, fake, dp)
        return d_loss, {"generator": g_grads, "discriminator": d_grads}

    return compile_for_mode(loss_and_grads, mode, traces, "loss_and_grads")


# --------------------------------------------------------------------------- counters

# JAX reports each XLA compilation, with its duration and the function's name
# ("jit(train_step)"; a primitive's own name in eager mode), as this event
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_compiled: collections.Counter[str] = collections.Counter()


def _count_compile(event: str, duration: float, **kwargs) -> None:
    if event == _BACKEND_COMPILE:
        _compiled[str(kwargs.get("fun_name"))] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compile)


def compiles(fun_name: str | None = None) -> int:
    """XLA compilations in this process since this module was imported: of the
    function JAX names ``fun_name`` (e.g. ``"jit(train_step)"``), or of any."""
    return _compiled[fun_name] if fun_name is not None else sum(_compiled.values())

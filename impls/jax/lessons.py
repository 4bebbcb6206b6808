"""The course's lessons in JAX; ``harness/lessons.py`` runs them, one process each.

Every ``impls/<fw>/lessons.py`` has the same function names, so the three can
be read side by side. Results are plain JSON values (floats, lists, strings).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


def _mean_of_square(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """The notes' computation: t = mean(z), z = y * y, y = x + 2; (y, z) ride along as aux."""
    y = x + 2
    z = y * y
    return jnp.mean(z), (y, z)


def autograd() -> dict[str, Any]:
    """The notes' autograd example: t = mean((x + 2)^2) at x = ones(2, 2), and dt/dx.

    Returns:
        ``y``, ``z``, ``t``: the forward values; ``grad_once``: one call of the
        function ``jax.grad`` made; ``grad_twice``: a second call, which returns the
        same new gradient (``"twice_means": "fresh"``: no state anywhere);
        ``graph``: the jaxpr ``jax.make_jaxpr`` traces for t(x).
    """
    x = jnp.ones((2, 2))
    # a gradient is a function of x here, not a field of x: nothing to accumulate into
    dt_dx = jax.value_and_grad(_mean_of_square, has_aux=True)
    (t, (y, z)), grad_once = dt_dx(x)
    _, grad_twice = dt_dx(x)
    grad_once, grad_twice = grad_once.tolist(), grad_twice.tolist()
    jaxpr = jax.make_jaxpr(lambda x: _mean_of_square(x)[0])(x)
    return {
        "y": y.tolist(),
        "z": z.tolist(),
        "t": float(t),
        "grad_once": grad_once,
        "grad_twice": grad_twice,
        # measured, not asserted: a second call that added up would say "accumulated"
        "twice_means": "fresh" if grad_twice == grad_once else "accumulated",
        "graph": ["jax.make_jaxpr(t)(x):", *("  " + line for line in str(jaxpr).splitlines())],
    }


# --------------------------------------------------------------------------- shapes

FIXED_BATCHES = [32] * 10
VARYING_BATCHES = [32, 17, 32, 24, 40, 17]
BUCKETS = (32, 64)


def _mlp_step(counter: dict[str, int], name: str):
    """A jitted SGD step of a 64-128-10 MLP (Flax NNX modules, split once; the step
    merges them back inside, as train.py does). ``counter[name]`` counts traces:
    Python runs the body only while jax.jit traces it. Given a row mask, the loss
    is averaged over the real rows only."""
    model = nnx.Sequential(
        nnx.Linear(64, 128, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(128, 10, rngs=nnx.Rngs(1))
    )
    graphdef, params = nnx.split(model)
    tx = optax.sgd(0.02, momentum=0.9)

    def loss_fn(params, x, y, mask):
        losses = optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, params)(x), y)
        return jnp.sum(losses * mask) / jnp.sum(mask)  # padded rows weigh 0

    def step(params, opt_state, x, y, mask=None):
        counter[name] = counter.get(name, 0) + 1
        mask = jnp.ones(len(x), x.dtype) if mask is None else mask
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, mask)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step), params, tx.init(params)


def _pad(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch padded with zero rows to the smallest bucket that holds it, and the
    mask of its real rows."""
    size = next(b for b in BUCKETS if b >= len(x))
    pad = size - len(x)
    mask = np.r_[np.ones(len(x), np.float32), np.zeros(pad, np.float32)]
    return np.pad(x, ((0, pad), (0, 0))), np.pad(y, (0, pad)), mask


def shapes() -> dict[str, Any]:
    """jax.jit compiles once per input shape: fixed batches trace once, every new
    batch size traces (and compiles) again; padding to two buckets and masking the
    padded rows out of the loss caps the traces at two.

    Returns:
        ``traces_fixed``: traces over 10 batches of 32; ``traces_varying``: new
        traces over the batches of ``VARYING_BATCHES`` that follow, in the same
        step function; ``seconds_varying``: their wall time, each step synced by
        reading its loss; ``traces_remedy`` and ``seconds_remedy``: the same batches
        through a padded, masked step (from the same starting weights); ``graph``:
        the compiled shapes and the largest gap between the two runs' losses.
    """
    rng = np.random.default_rng(0)
    batches = [
        (rng.standard_normal((n, 64), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32))
        for n in FIXED_BATCHES + VARYING_BATCHES
    ]
    fixed, varying = batches[: len(FIXED_BATCHES)], batches[len(FIXED_BATCHES) :]
    traces: dict[str, int] = {}
    step, params, opt_state = _mlp_step(traces, "plain")
    for x, y in fixed:
        params, opt_state, loss = step(params, opt_state, x, y)
        float(loss)
    traces_fixed = traces["plain"]
    start = (params, opt_state)  # both runs over the varying batches start here

    t0 = time.perf_counter()
    plain_losses = []
    for x, y in varying:
        params, opt_state, loss = step(params, opt_state, x, y)
        plain_losses.append(float(loss))
    seconds_varying = time.perf_counter() - t0

    padded_step, _, _ = _mlp_step(traces, "padded")
    params, opt_state = start
    t0 = time.perf_counter()
    padded_losses = []
    for x, y in varying:
        params, opt_state, loss = padded_step(params, opt_state, *_pad(x, y))
        padded_losses.append(float(loss))
    seconds_remedy = time.perf_counter() - t0
    gap = max(abs(a - b) for a, b in zip(plain_losses, padded_losses, strict=True))
    return {
        "traces_fixed": traces_fixed,
        "traces_varying": traces["plain"] - traces_fixed,
        "seconds_varying": round(seconds_varying, 3),
        "remedy": f"pad to {' or '.join(map(str, BUCKETS))} rows, mask them out of the loss",
        "traces_remedy": traces["padded"],
        "seconds_remedy": round(seconds_remedy, 3),
        "graph": [
            "one XLA executable per input shape, cached by jax.jit:",
            f"  plain step: {step._cache_size()} compiled (batch sizes "
            f"{sorted({len(x) for x, _ in batches})})",
            f"  padded step: {padded_step._cache_size()} compiled (buckets {list(BUCKETS)})",
            f"  largest gap between the two runs' losses: {gap:.1e}",
        ],
    }


# --------------------------------------------------------------------------- control flow


def _branchy(x: jax.Array) -> jax.Array:
    """The notes' function, with a Python if on the data."""
    if jnp.sum(x) > 0:
        return x * 2
    return x - 1


def _with_cond(x: jax.Array) -> jax.Array:
    """The same with both branches in the graph: lax.cond picks one at run time."""
    return jax.lax.cond(jnp.sum(x) > 0, lambda x: x * 2, lambda x: x - 1, x)


def _error_kind(err: Exception) -> str:
    """The error's class, and the ConcretizationTypeError it is a kind of."""
    name = type(err).__name__
    base = jax.errors.ConcretizationTypeError.__name__
    return name if name == base else f"{name} (a {base})"


def control_flow() -> dict[str, Any]:
    """``jax.jit`` of a Python ``if`` on a traced value: the tracer has no value to
    branch on, so tracing stops with an error (no graph, no fallback); lax.cond
    traces both branches into one graph.

    Returns:
        ``outcome``, ``positive``/``negative`` (the jitted function's results, "-"
        when refused), ``breaks`` (traces tried, and refused), ``error`` (its first
        line), ``remedy``, ``remedy_negative``; ``graph``: lax.cond's jaxpr.
    """
    pos, neg = jnp.array([1.0, 2.0, 3.0]), jnp.array([-1.0, -2.0, -3.0])
    traces = {"branchy": 0}

    def counted(x):
        traces["branchy"] += 1
        return _branchy(x)

    jitted = jax.jit(counted)
    results, errors = {}, []
    for name, x in (("positive", pos), ("negative", neg)):
        try:
            results[name] = jitted(x).tolist()
        except jax.errors.ConcretizationTypeError as err:  # TracerBoolConversionError is one
            results[name] = "-"
            errors.append(err)
    refused = len(errors)
    cond = jax.jit(_with_cond)
    return {
        "outcome": f"refused: {_error_kind(errors[0])}" if errors else "traced",
        "positive": results["positive"],
        "negative": results["negative"],
        # jit has no graph breaks: a function traces whole or not at all; a refused
        # trace is not cached, so each call traces (and is refused) again
        "breaks": f"0 breaks; {traces['branchy']} traces, {refused} refused",
        "error": str(errors[0]).splitlines()[0] if errors else "-",
        "remedy": "jax.lax.cond",
        "remedy_negative": cond(neg).tolist(),
        "graph": [
            "jax.make_jaxpr(lax.cond version)(x): both branches in the graph",
            *("  " + line for line in str(jax.make_jaxpr(_with_cond)(neg)).splitlines()),
        ],
    }

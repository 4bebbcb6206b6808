"""The course's lessons in JAX; ``harness/lessons.py`` runs them, one process each.

Every ``impls/<fw>/lessons.py`` has the same function names, so the three can
be read side by side. Results are plain JSON values (floats, lists, strings).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


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

"""What the harness knows of the JAX backend without importing jax."""

from __future__ import annotations

import os

NAME = "jax"
TARGET = "impls.jax.backend:JaxBackend"
PACKAGES = ("jax", "flax", "optax")
DISTRIBUTIONS: dict[str, str] = {}
EXTRA = "jax"
MODES = ("eager", "graph")
MINIMAL = "impls.jax.minimal"
MINIMAL_ONLY = {"functional": "graph"}  # the pure-function loop, paired with jax.jit
COLOR = "#2ca02c"  # its colour in every figure of a report

# what this framework does in each lesson (harness.lessons), after the common part
LESSONS = {
    "autograd": (
        "jax.grad returns a new gradient on every call and keeps nothing between calls:"
        " two calls give 1.5 twice (the gradient is just another function)."
    ),
    "shapes": (
        "jax.jit compiles once per shape, always: the remedy is to pad batches to a few"
        " bucket sizes and mask the padded rows out of the loss, so a handful of "
        "compiles serves every batch."
    ),
    "control_flow": (
        "jax.jit refuses with a concretization error, because tracing sees an abstract "
        "value, and asks for jax.lax.cond (or jnp.where) instead."
    ),
}


def thread_env(threads: int) -> dict[str, str | None]:
    """XLA's CPU client sizes its pool from PJRT_NPROC (intra_op_parallelism_threads is
    not an XLA flag: bare it is ignored, with "--" XLA aborts); one thread also turns
    off Eigen's multithreading inside XLA's kernels (0: XLA's defaults)."""
    if threads <= 0:
        return {"PJRT_NPROC": None}
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        flags += " --xla_cpu_multi_thread_eigen=false"
    return {"PJRT_NPROC": str(threads), "XLA_FLAGS": flags.strip()}

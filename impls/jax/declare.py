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

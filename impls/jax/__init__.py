"""JAX backend: Flax NNX modules, Optax optimizers, pure train steps under jax.jit."""

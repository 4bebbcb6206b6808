"""The course's lessons in TensorFlow; ``harness/lessons.py`` runs them, one process each.

Every ``impls/<fw>/lessons.py`` has the same function names, so the three can
be read side by side. Results are plain JSON values (floats, lists, strings).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def _mean_of_square(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The notes' computation: y = x + 2, z = y * y, t = mean(z)."""
    y = x + 2
    z = y * y
    return y, z, tf.reduce_mean(z)


def _graph_lines() -> list[str]:
    """The ops of the graph tf.function traces for t(x), as ``name = Type(inputs)``."""
    traced = tf.function(lambda x: _mean_of_square(x)[2])
    graph = traced.get_concrete_function(tf.TensorSpec([2, 2], tf.float32, name="x")).graph
    lines = ["tf.function(t).get_concrete_function(...).graph.get_operations():"]
    for op in graph.get_operations():
        inputs = ", ".join(i.name.removesuffix(":0") for i in op.inputs)
        lines.append(f"  {op.name} = {op.type}({inputs})")
    return lines


def autograd() -> dict[str, Any]:
    """The notes' autograd example: t = mean((x + 2)^2) at x = ones(2, 2), and dt/dx.

    Returns:
        ``y``, ``z``, ``t``: the forward values; ``grad_once``: one
        ``tape.gradient``; ``grad_twice``: a second call on the same (persistent)
        tape, which returns a new gradient (``"twice_means": "fresh"``);
        ``graph``: the ops of the tf.function graph of the same computation.
    """
    x = tf.Variable(tf.ones((2, 2)))  # a trainable Variable: the tape watches it unasked
    # persistent: a plain tape frees its record after one gradient() and a second raises
    with tf.GradientTape(persistent=True) as tape:
        y, z, t = _mean_of_square(x)
    grad_once = tape.gradient(t, x).numpy().tolist()
    grad_twice = tape.gradient(t, x).numpy().tolist()
    del tape  # a persistent tape holds its tensors until dropped
    return {
        "y": y.numpy().tolist(),
        "z": z.numpy().tolist(),
        "t": float(t),
        "grad_once": grad_once,
        "grad_twice": grad_twice,
        # measured, not asserted: a second call that added up would say "accumulated"
        "twice_means": "fresh" if grad_twice == grad_once else "accumulated",
        "graph": _graph_lines(),
    }

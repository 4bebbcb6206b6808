"""The course's lessons in TensorFlow; ``harness/lessons.py`` runs them, one process each.

Every ``impls/<fw>/lessons.py`` has the same function names, so the three can
be read side by side. Results are plain JSON values (floats, lists, strings).
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf


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


# --------------------------------------------------------------------------- shapes

FIXED_BATCHES = [32] * 10
VARYING_BATCHES = [32, 17, 32, 24, 40, 17]


def _mlp_step(traced: list[str], **tf_function_kwargs: Any) -> Any:
    """A tf.function SGD step of a 64-128-10 MLP (Keras layers, the custom training
    loop of TensorFlow's guide), its weights seeded so every variant starts alike.
    Python runs the step's body only while tf.function traces it: each trace
    appends the shape it was traced for to ``traced``."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]
    )
    optimizer = keras.optimizers.SGD(0.02, momentum=0.9)
    optimizer.build(model.trainable_variables)  # its slots exist before the first trace
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(**tf_function_kwargs)
    def step(x, y):
        traced.append(str(tuple(x.shape)))
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def _run(step, batches) -> tuple[int, float]:
    """New traces of ``step`` over ``batches`` and their wall time (each step synced
    by reading its loss on the host)."""
    before = step.experimental_get_tracing_count()
    t0 = time.perf_counter()
    for x, y in batches:
        float(step(x, y))
    return step.experimental_get_tracing_count() - before, time.perf_counter() - t0


def shapes() -> dict[str, Any]:
    """tf.function traces a concrete function per new input shape: fixed batches
    trace once, each new batch size traces again; an ``input_signature`` whose batch
    axis is None gives one shape-generic trace (``reduce_retracing=True`` too, after
    the second shape: measured in ``graph``).

    Returns:
        ``traces_fixed``: traces over 10 batches of 32; ``traces_varying``: new
        traces over ``VARYING_BATCHES`` that follow, in the same step function;
        ``seconds_varying``: their wall time; ``traces_remedy`` and ``seconds_remedy``:
        the same batches through a fresh step with a None batch axis in its
        ``input_signature``; ``graph``: each variant's concrete functions.
    """
    rng = np.random.default_rng(0)
    batches = [
        (
            tf.convert_to_tensor(rng.standard_normal((n, 64), dtype=np.float32)),
            tf.convert_to_tensor(rng.integers(0, 10, n).astype(np.int32)),
        )
        for n in FIXED_BATCHES + VARYING_BATCHES
    ]
    fixed, varying = batches[: len(FIXED_BATCHES)], batches[len(FIXED_BATCHES) :]
    shapes_traced: dict[str, list[str]] = {"plain": [], "generic": [], "relaxed": []}
    plain = _mlp_step(shapes_traced["plain"])
    traces_fixed, _ = _run(plain, fixed)
    traces_varying, seconds_varying = _run(plain, varying)

    signature = [tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32)]
    generic = _mlp_step(shapes_traced["generic"], input_signature=signature)
    traces_remedy, seconds_remedy = _run(generic, varying)
    relaxed = _mlp_step(shapes_traced["relaxed"], reduce_retracing=True)
    traces_relaxed, seconds_relaxed = _run(relaxed, varying)
    return {
        "traces_fixed": traces_fixed,
        "traces_varying": traces_varying,
        "seconds_varying": round(seconds_varying, 3),
        "remedy": "input_signature, batch axis None",
        "traces_remedy": traces_remedy,
        "seconds_remedy": round(seconds_remedy, 3),
        "graph": [
            "one concrete function (a traced graph) per input signature; x's shape per trace:",
            f"  plain step: {', '.join(shapes_traced['plain'])}",
            f"  input_signature=[TensorSpec([None, 64]), ...]: "
            f"{', '.join(shapes_traced['generic'])}",
            f"  reduce_retracing=True: {', '.join(shapes_traced['relaxed'])} "
            f"({traces_relaxed} traces, {seconds_relaxed:.3f} s on the varying batches)",
        ],
    }


# --------------------------------------------------------------------------- control flow


def _branchy(x: tf.Tensor) -> tf.Tensor:
    """The notes' function, with a Python if on the data."""
    if tf.reduce_sum(x) > 0:
        return x * 2
    return x - 1


def _with_cond(x: tf.Tensor) -> tf.Tensor:
    """The same with tf.cond written out: both branches in the graph."""
    return tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2, lambda: x - 1)


def _op_types(fn, x: tf.Tensor) -> list[str]:
    return [op.type for op in fn.get_concrete_function(x).graph.get_operations()]


def control_flow() -> dict[str, Any]:
    """``tf.function`` of a Python ``if`` on a tensor: AutoGraph rewrites it into
    ``tf.cond`` while tracing (both branches become functions of one If op), so one
    trace serves both signs; ``tf.cond`` written by hand gives the same graph.

    Returns:
        ``outcome`` (what the traced graph holds, read from its ops),
        ``positive``/``negative``, ``breaks`` (traces for the two calls),
        ``error`` ("-" unless tracing raised), ``remedy``, ``remedy_negative``;
        ``graph``: the traced graph's ops.
    """
    pos, neg = tf.constant([1.0, 2.0, 3.0]), tf.constant([-1.0, -2.0, -3.0])
    traced = tf.function(_branchy)
    results, error = {}, "-"
    for name, x in (("positive", pos), ("negative", neg)):
        try:
            results[name] = traced(x).numpy().tolist()
        except Exception as err:  # a refusal is the lesson's result, not a crash
            results[name], error = "-", f"{type(err).__name__}: {str(err).splitlines()[0]}"
    traces = traced.experimental_get_tracing_count()
    ops = _op_types(traced, pos) if error == "-" else []
    conds = [t for t in ops if t in ("If", "StatelessIf")]
    if conds:
        outcome = f"AutoGraph converted it to tf.cond ({conds[0]} op)"
    else:
        outcome = "traced without a cond" if error == "-" else "refused"
    graph = traced.get_concrete_function(pos).graph if error == "-" else None
    return {
        "outcome": outcome,
        "positive": results["positive"],
        "negative": results["negative"],
        # tf.function has no graph breaks: AutoGraph converts the whole function
        "breaks": f"0 breaks; {traces} trace{'s' if traces != 1 else ''}",
        "error": error,
        "remedy": "tf.cond",
        "remedy_negative": tf.function(_with_cond)(neg).numpy().tolist(),
        "graph": [
            "tf.function(f).get_concrete_function(x).graph.get_operations():",
            *(
                f"  {op.name} = {op.type}({', '.join(i.name.removesuffix(':0') for i in op.inputs)})"
                for op in (graph.get_operations() if graph is not None else [])
            ),
            "AutoGraph's rewrite of the Python source (tf.autograph.to_code, the if part):",
            *_autograph_if_lines(),
        ],
    }


def _autograph_if_lines() -> list[str]:
    """The lines of AutoGraph's generated code that call its conditional."""
    code = tf.autograph.to_code(_branchy)
    return ["  " + line.strip() for line in code.splitlines() if "if_stmt" in line]

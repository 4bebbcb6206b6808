"""The task's model as Keras builds, shows and traces it; ``harness/explain.py`` runs it.

Every ``impls/<fw>/explain.py`` has the same ``explain(spec, input_shape)``,
returning plain JSON values, so the three can be read side by side.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import tensorflow as tf

from harness.backend import Options
from harness.data.batching import random_batch
from harness.explain import EXAMPLE_BATCH, clip_lines, op_table
from harness.spec import Shape, TaskSpec, task_layers, task_param_count
from impls.tf.backend import TFBackend, TFState

_UNSHOWN = {"name", "dtype", "trainable"}  # the same for every layer of a run


def _qualname(layer: keras.layers.Layer) -> str:
    """``keras.layers.Conv2D`` for Keras' public classes, the defining module otherwise."""
    cls = type(layer)
    if getattr(keras.layers, cls.__name__, None) is cls:
        return f"keras.layers.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _required(cls: type) -> list[str]:
    """The constructor arguments without a default (``filters``, ``kernel_size``)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in params if p.default is inspect.Parameter.empty and p.kind not in kinds]


def one_line(layer: keras.layers.Layer) -> str:
    """A layer as its class and the ``get_config()`` entries that differ from the
    class' defaults (found by building a default layer of the same class), the
    required arguments always shown. ``Bidirectional`` shows the layer it wraps
    (its config holds it serialized, which its constructor does not take)."""
    if isinstance(layer, keras.layers.Bidirectional):
        inner = one_line(layer.forward_layer)
        merge = "" if layer.merge_mode == "concat" else f", merge_mode={layer.merge_mode!r}"
        return f"{_qualname(layer)}({inner}{merge})"
    config = layer.get_config()
    required = _required(type(layer))
    default = type(layer)(**{key: config[key] for key in required}).get_config()
    shown = [key for key in required if key in config]
    shown += [
        key
        for key, value in config.items()
        if key not in _UNSHOWN and key not in shown and default.get(key) != value
    ]
    return f"{_qualname(layer)}({', '.join(f'{k}={config[k]!r}' for k in shown)})"


def _mask_of(layer: keras.layers.Layer) -> str | None:
    """The name of the layer whose output ``layer`` was given as ``mask=``, if any."""
    for node in layer._inbound_nodes:
        mask = node.arguments.kwargs.get("mask")
        if mask is not None:
            return mask._keras_history.operation.name
    return None


def mapping(model: keras.Model, name: str) -> str:
    """One spec layer's Keras layer, with the explicit mask it reads and the mask
    layer that goes with it (``"<name>.mask"``: an embedding's PaddingMask, a masked
    conv1d's ShiftMask; see impls/tf/layers.py)."""
    layer = model.get_layer(name)
    text = one_line(layer)
    mask = _mask_of(layer)
    if mask is not None:
        text += f" called with mask={mask}"
    helper = next((m for m in model.layers if m.name == f"{name}.mask"), None)
    if helper is not None:
        text += f"; {helper.name} = {one_line(helper)}"
    return text


def _summary(model: keras.Model) -> str:
    lines: list[str] = []
    # Keras 3 passes whole blocks of text, and a line_break keyword, to print_fn
    model.summary(line_length=80, print_fn=lambda text, line_break=False: lines.append(text))
    return "\n".join(lines)


def _graphs(state: TFState, x, second) -> list[dict[str, Any]]:
    """The ops of the train step's graph, as graph mode's tf.function traces it, and
    (when there are any) those of the function bodies it calls: a recurrent layer's
    ``tf.while_loop`` keeps its step, and the step's gradient, in such bodies.
    ``second`` is the step's second input: the targets, or a gan's noise."""
    concrete = state.train_fn.get_concrete_function(
        tf.TensorSpec(x.shape, state.x_dtype),
        tf.TensorSpec(second.shape, tf.as_dtype(second.dtype)),
    )
    ops = [op.type for op in concrete.graph.get_operations()]
    library = concrete.graph.as_graph_def().library.function
    note = "forward, GradientTape gradients and the optimizer update in one graph"
    if state.gan:
        note = "both networks' forward, gradients and updates (D's, then G's) in one graph"
    if library:
        note += f"; the {len(library)} function bodies it calls are counted below"
    tables = [
        op_table("tf.function train step, concrete graph (graph.get_operations())", ops, note)
    ]
    if library:
        body_ops = [node.op for fn in library for node in fn.node_def]
        tables.append(
            op_table(
                f"its {len(library)} nested function bodies (graph_def.library)",
                body_ops,
                "the recurrent layers' while_loop bodies and conditions, forward and "
                "gradient: each runs once per time step",
            )
        )
    return tables


def explain(spec: TaskSpec, input_shape: Shape) -> dict[str, Any]:
    """The spec's model as Keras builds it, shows it, and TensorFlow traces one step.

    Args:
        spec: the task (a gan's: both networks, generator first).
        input_shape: one sample's shape, NHWC or [features].

    Returns:
        ``layout``; ``display`` (``model.summary()``, clipped) and ``display_by``;
        ``param_count`` (Keras' count), ``param_count_by``, ``spec_param_count``;
        ``layers``: one ``{"name", "framework"}`` per spec layer in ``task_layers``
        order; ``graphs``: op tables (``harness.explain.op_table``) of one training step.
    """
    shape = tuple(input_shape)
    backend = TFBackend()
    # graph mode: its train step is the tf.function whose graph is counted
    backend.configure(Options(mode="graph"))
    state = backend.build(spec, shape, None)
    owner = {
        name: net.model
        for net, names in zip(state.nets, state.layer_names, strict=True)
        for name in names
    }
    rows = [
        {"name": layer.name, "framework": mapping(owner[layer.name], layer.name)}
        for layer, _, _ in task_layers(spec, shape)
    ]
    # random_batch: a gan's batch is real samples and the generator's noise
    batch = random_batch(spec, shape, EXAMPLE_BATCH)
    summaries = [_summary(net.model) for net in state.nets]
    if state.gan:  # one summary per network, under its role
        summaries = [
            f"{role}:\n{text}"
            for role, text in zip(("generator", "discriminator"), summaries, strict=True)
        ]
    return {
        "layout": "NHWC",
        "display": clip_lines("\n".join(summaries)),
        "display_by": "model.summary(print_fn=...)",
        "param_count": sum(int(net.model.count_params()) for net in state.nets),
        "param_count_by": "model.count_params()",
        "spec_param_count": task_param_count(spec, shape),
        "layers": rows,
        "graphs": _graphs(state, batch.x, batch.z if state.gan else batch.y),
    }

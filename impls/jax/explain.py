"""The task's model as Flax NNX builds and shows it, and its train step's jaxpr;
``harness/explain.py`` runs it.

Every ``impls/<fw>/explain.py`` has the same ``explain(spec, input_shape)``,
returning plain JSON values, so the three can be read side by side.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.extend.core import jaxprs_in_params

from harness.backend import Options
from harness.explain import clip_lines, example_batch, op_table
from harness.spec import Shape, TaskSpec, masked_inputs, networks, task_layers, task_param_count
from impls.jax import layers
from impls.jax.backend import JaxBackend

_BLOCKS = (layers.Residual, layers.Parallel, layers.Stack)
# arguments that are the same for every layer of a run, or functions, not settings
_UNSHOWN = {"dtype", "param_dtype", "rngs", "precision", "preferred_element_type", "mask"}


def _name(fn: Any) -> str:
    """``flax.nnx.relu`` for what nnx exports, the defining module's name otherwise."""
    name = getattr(fn, "__name__", type(fn).__name__)
    if getattr(nnx, name, None) is fn:
        return f"flax.nnx.{name}"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', name)}"


def _same(value: Any, default: Any) -> bool:
    """Equal, counting Flax's normalized ``(1, 1)`` as the default ``1``."""
    if isinstance(value, tuple) and isinstance(default, int):
        return all(v == default for v in value)
    return value == default


def _arguments(module: nnx.Module) -> list[str]:
    """``key=value`` for the constructor arguments the module keeps as attributes:
    the required ones, and the others where they differ from the default."""
    shown = []
    for p in list(inspect.signature(type(module).__init__).parameters.values())[1:]:
        if p.name in _UNSHOWN or not hasattr(module, p.name):
            continue
        value = getattr(module, p.name)
        if callable(value) or (p.default is not p.empty and _same(value, p.default)):
            continue
        shown.append(f"{p.name}={value!r}")
    return shown


def _module(module: nnx.Module) -> str:
    return f"{_name(type(module))}({', '.join(_arguments(module))})"


def _recurrent(layer: layers.Recurrent, masked: bool) -> str:
    """The cells, and what steps them: Flax's scan wrappers, or a Python loop."""
    cells = [_module(cell) for cell in layer.cells]
    if layer.unroll:
        how = "masked steps keep the state" if masked else "no mask"
        return f"{' and '.join(cells)} stepped in a Python for loop ({how}; jit traces each step)"
    wrapped = [f"flax.nnx.RNN({cell})" for cell in cells]
    if isinstance(layer.rnn, nnx.Bidirectional):
        inner = f"forward_rnn={wrapped[0]}, backward_rnn={wrapped[1]}"
        scanned = f"flax.nnx.Bidirectional({inner})"
    else:
        scanned = wrapped[0]
    lengths = "seq_lengths=mask.sum(1)" if masked else "no mask"
    return f"{scanned}, {lengths} (lax.scan)"


def one_line(layer: Any, masked: bool = False) -> str:
    """A spec layer's Flax object as one line: a module with its arguments, a block
    with its containers (its layers have rows of their own), or a plain function;
    ``masked``: the layer reads a padded sequence (``harness.spec.masked_inputs``)."""
    if isinstance(layer, layers.Recurrent):
        return _recurrent(layer, masked)
    if isinstance(layer, layers.Embed):  # nnx.Embed, plus where the mask starts
        args = [a for a in _arguments(layer) if not a.startswith("padding=")]
        mask = "mask = ids != 0" if layer.padding else "no mask (unpadded)"
        return f"flax.nnx.Embed({', '.join(args)}), {mask}"
    if isinstance(layer, _BLOCKS):
        inside = [
            f"{key}={type(v).__name__}[{len(v.order if isinstance(v, layers.Stack) else v)}]"
            for key, v in vars(layer).items()
            if isinstance(v, layers.Stack | nnx.List)
        ]
        return f"{_name(type(layer))}({', '.join(inside)})"
    if isinstance(layer, nnx.Module):
        return _module(layer)
    if isinstance(layer, functools.partial):
        args = [f"{k}={v!r}" for k, v in layer.keywords.items()]
        return f"{_name(layer.func)}({', '.join(args)})"
    return _name(layer)


def _layers_by_name(stack: layers.Stack) -> dict[str, Any]:
    """Every spec layer's Flax object, keyed by spec name, blocks' insides included."""
    found = {}
    for name in stack.order:
        layer = found[name] = stack.layers[name]
        if isinstance(layer, layers.Residual):
            found |= _layers_by_name(layer.body) | _layers_by_name(layer.shortcut)
        elif isinstance(layer, layers.Parallel):
            for branch in layer.branches:
                found |= _layers_by_name(branch)
    return found


def _display(model: layers.Stack, by_name: dict[str, Any]) -> list[str]:
    """nnx's repr of the model (what ``nnx.display`` prints outside a notebook),
    with function objects named instead of shown by address."""
    return _display_text(repr(model), by_name)


def _display_text(text: str, by_name: dict[str, Any]) -> list[str]:
    for layer in by_name.values():
        if not isinstance(layer, nnx.Module):
            text = text.replace(repr(layer), one_line(layer))
    text = re.sub(r"<function (\S+) at 0x[0-9a-f]+>", r"\1", text)
    return clip_lines(text)


def _primitives(jaxpr: Any) -> list[str]:
    """Every equation's primitive, nested jaxprs (jit, custom_jvp bodies) included."""
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        for inner in jaxprs_in_params(eqn.params):
            names += _primitives(inner)
    return names


def _graph(spec: TaskSpec, input_shape: Shape) -> dict[str, Any]:
    backend = JaxBackend()
    # eager mode: its train_step is the pure function graph mode hands jax.jit
    backend.configure(Options(mode="eager"))
    state = backend.build(spec, input_shape, None)
    x, y = example_batch(spec, input_shape)
    if state.gan:  # real samples of the data's shape, and the generator's noise
        rng = np.random.default_rng(0)
        x = rng.normal(size=(len(x), *input_shape)).astype(np.float32)
        y = rng.normal(size=(len(x), *spec.model.input_shape)).astype(np.float32)
    closed = jax.make_jaxpr(state.train_step)(state.params, state.opt_state, state.key, x, y)
    names = _primitives(closed.jaxpr)
    loops = names.count("scan")
    scans = (
        f"; {loops} scan loops (forward and grad of nnx.RNN), bodies counted once" if loops else ""
    )
    what = (
        "the discriminator's and then the generator's forward, grad and optax update"
        if state.gan
        else "forward, grad and the optax update"
    )
    return op_table(
        "jaxpr of the train step (jax.make_jaxpr), equations by primitive",
        names,
        f"{len(closed.jaxpr.eqns)} top-level equations; nested jit/scan/custom_jvp bodies "
        f"counted too; {what} in one function{scans}",
    )


def explain(spec: TaskSpec, input_shape: Shape) -> dict[str, Any]:
    """The spec's model as Flax NNX builds and shows it, and its train step's jaxpr.

    Args:
        spec: the task (a gan's: both networks, generator first).
        input_shape: one sample's shape, NHWC or [features].

    Returns:
        ``layout``; ``display`` (nnx's repr, clipped) and ``display_by``;
        ``param_count`` (leaves of the models' ``nnx.Param`` states),
        ``param_count_by``, ``spec_param_count``; ``layers``: one ``{"name",
        "framework"}`` per spec layer in ``task_layers`` order; ``graphs``: op
        tables of one training step.
    """
    shape = tuple(input_shape)
    # the backend's own builder: the backend's state keeps the models split into pytrees
    models = layers.build_networks(spec, shape, "float32")
    by_name: dict[str, Any] = {}
    masked: dict[str, bool] = {}
    for (_, model_spec, _), model in zip(networks(spec, shape), models.values(), strict=True):
        by_name |= _layers_by_name(model)
        masked |= masked_inputs(model_spec)
    rows = [
        {"name": layer.name, "framework": one_line(by_name[layer.name], masked[layer.name])}
        for layer, _, _ in task_layers(spec, shape)
    ]
    if len(models) == 1:
        display = _display(models["model"], by_name)
    else:  # one repr per network, under its role
        text = "\n".join(f"{role} = {repr(model)}" for role, model in models.items())
        display = _display_text(text, by_name)
    params = [nnx.state(model, nnx.Param) for model in models.values()]
    return {
        "layout": "NHWC",
        "display": display,
        "display_by": "nnx.display(model), i.e. its repr outside a notebook",
        "param_count": int(sum(leaf.size for leaf in jax.tree.leaves(params))),
        "param_count_by": "sum of leaf sizes of nnx.state(model, nnx.Param)",
        "spec_param_count": task_param_count(spec, shape),
        "layers": rows,
        "graphs": [_graph(spec, shape)],
    }

"""The task's model as PyTorch builds, shows and traces it; ``harness/explain.py`` runs it.

Every ``impls/<fw>/explain.py`` has the same ``explain(spec, input_shape)``,
returning plain JSON values, so the three can be read side by side.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from harness.backend import Batch, Options
from harness.explain import clip_lines, example_batch, op_table
from harness.spec import Shape, TaskSpec, masked_inputs, param_count, walk
from impls.torch import layers
from impls.torch.backend import TorchBackend, TorchState

_BLOCKS = (layers.Residual, layers.Parallel)


def _qualname(module: nn.Module) -> str:
    """``torch.nn.Conv2d`` for torch's own classes, the defining module otherwise."""
    cls = type(module)
    if getattr(nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def one_line(module: nn.Module) -> str:
    """A module as one line: its class and ``extra_repr`` (the arguments torch prints).

    A block (residual, parallel) names its containers only, since the layers inside
    have rows of their own; a helper Sequential (padding + conv) shows its parts.
    """
    children = list(module.named_children())
    if isinstance(module, _BLOCKS):
        inside = [f"{name}={type(c).__name__}[{len(c)}]" for name, c in children]
        return f"{_qualname(module)}({', '.join(inside)})"
    if children:
        return f"{_qualname(module)}({', '.join(one_line(c) for _, c in children)})"
    return f"{_qualname(module)}({module.extra_repr()})"


def sequence_line(module: nn.Module, masked: bool) -> str | None:
    """The torch module a sequence wrapper of ``layers`` runs, and what it adds
    around it (the mask, packing, a loop, a transpose); None for other modules.
    ``masked``: whether the layer's input is a padded sequence."""
    if isinstance(module, layers.TokenEmbedding):
        mask = "; mask = ids != 0" if module.padding else " (no padding: no mask)"
        return one_line(module.embedding) + mask
    if isinstance(module, layers.Recurrent):
        frozen = "" if module.kind == "gru" else "; bias_hh zeroed, requires_grad=False"
        if module.unroll:
            where = ", torch.where(mask) on each step" if masked else ""
            cells = " + ".join(one_line(c) for c in module.cells)
            return f"{cells} stepped in a Python for loop{where}{frozen}"
        packed = " on pack_padded_sequence(x, mask.sum(1), enforce_sorted=False)"
        return one_line(module.rnn) + (packed if masked else "") + frozen
    if isinstance(module, layers.SequenceConv):
        pad = f"F.pad{module.pads} then " if module.pads else ""
        return f"{pad}{one_line(module.conv)} on x.transpose(1, 2) (NWC -> NCW)"
    if isinstance(module, layers.GlobalPool):
        if not masked:
            return f"torch.{'amax' if module.kind == 'max' else 'mean'}(x, dim={module.dims})"
        if module.kind == "max":
            return "torch.amax(x.masked_fill(~mask, -inf), dim=1), 0 where no step is real"
        return "torch.where(mask, x, 0).sum(1) / mask.sum(1) (the real steps only)"
    return None


def _modules_by_name(model: nn.Module) -> dict[str, nn.Module]:
    # every Chain layers.build_model makes names its children by spec layer name
    # (the children of a helper inside a layer, e.g. a Recurrent's ``rnn``, are not)
    return {
        name: child
        for chain in model.modules()
        if isinstance(chain, layers.Chain)
        for name, child in chain.named_children()
    }


def _autograd_nodes(fn: Any) -> list[str]:
    """Every node of the backward graph below ``fn``, once each, by class name."""
    seen, stack, names = set(), [fn], []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue  # None: an input that needs no gradient (the targets)
        seen.add(id(node))
        names.append(type(node).__name__)
        stack.extend(child for child, _ in node.next_functions)
    return names


def _graphs(backend: TorchBackend, state: TorchState, batch: Batch) -> list[dict[str, Any]]:
    x, y = backend._x(batch.x), backend._y(state, batch.y)
    state.model.train()
    loss = state.loss(state.model(x), y)
    autograd = op_table(
        "autograd graph (loss.grad_fn, walked by next_functions)",
        _autograd_nodes(loss.grad_fn),
        "recorded as the forward runs; optimizer.step() runs eagerly outside it",
    )
    # trainable only: autograd.grad refuses RNN/LSTM's frozen bias_hh
    params = [p for p in state.model.parameters() if p.requires_grad]

    def forward_backward(x: torch.Tensor, y: torch.Tensor):
        return torch.autograd.grad(state.loss(state.model(x), y), params)

    # make_fx: the aten-level graph of forward + loss + backward, what AOTAutograd
    # hands Inductor in graph mode (Dynamo's own capture is slower and adds guards).
    # Packing a padded batch reads the lengths' values (the packed batch sizes):
    # allowed here, so they are burnt into this one step's graph
    fx = make_fx(forward_backward, _error_on_data_dependent_ops=False)(x, y)
    targets = [
        str(n.target).removeprefix("aten.")
        for n in fx.graph.nodes
        if n.op == "call_function" and "getitem" not in str(n.target)
    ]
    traced = op_table(
        "FX graph of forward + loss + backward (make_fx, aten ops)",
        targets,
        "tuple getitem nodes not counted; the optimizer step is not in it",
    )
    return [autograd, traced]


def explain(spec: TaskSpec, input_shape: Shape) -> dict[str, Any]:
    """The spec's model as PyTorch builds it, shows it and traces one training step.

    Args:
        spec: the task.
        input_shape: one sample's shape, NHWC or [features].

    Returns:
        ``layout``; ``display`` (``print(model)``, clipped) and ``display_by``;
        ``param_count`` (torch's count), ``param_count_by``, ``spec_param_count``;
        ``layers``: one ``{"name", "framework"}`` per spec layer in ``walk`` order;
        ``graphs``: op tables (``harness.explain.op_table``) of one training step.
    """
    backend = TorchBackend()
    backend.configure(Options(mode="eager"))
    state = backend.build(spec, tuple(input_shape), None)
    modules = _modules_by_name(state.model)
    masked = masked_inputs(spec.model)
    rows = []
    for layer, _, _ in walk(spec.model.layers, tuple(input_shape)):
        module = modules[layer.name]
        line = sequence_line(module, masked[layer.name]) or one_line(module)
        rows.append({"name": layer.name, "framework": line})
    batch = Batch(*example_batch(spec, tuple(input_shape)))
    return {
        "layout": "NCHW",
        "display": clip_lines(str(state.model)),
        "display_by": "print(model)",
        "param_count": int(backend.param_count(state)),
        "param_count_by": "sum(p.numel() for p in model.parameters() if p.requires_grad)",
        "spec_param_count": param_count(spec.model, tuple(input_shape)),
        "layers": rows,
        "graphs": _graphs(backend, state, batch),
    }

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
from harness.spec import Shape, TaskSpec, param_count, walk
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


def _modules_by_name(model: nn.Module) -> dict[str, nn.Module]:
    # layers.build_model registers each spec layer under its spec name, unique in the model
    return {path.rpartition(".")[2]: m for path, m in model.named_modules() if path}


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
    params = list(state.model.parameters())

    def forward_backward(x: torch.Tensor, y: torch.Tensor):
        return torch.autograd.grad(state.loss(state.model(x), y), params)

    # make_fx: the aten-level graph of forward + loss + backward, what AOTAutograd
    # hands Inductor in graph mode (Dynamo's own capture is slower and adds guards)
    fx = make_fx(forward_backward)(x, y)
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
    rows = [
        {"name": layer.name, "framework": one_line(modules[layer.name])}
        for layer, _, _ in walk(spec.model.layers, tuple(input_shape))
    ]
    batch = Batch(*example_batch(spec, tuple(input_shape)))
    return {
        "layout": "NCHW",
        "display": clip_lines(str(state.model)),
        "display_by": "print(model)",
        "param_count": int(backend.param_count(state)),
        "param_count_by": "sum(p.numel() for p in model.parameters())",
        "spec_param_count": param_count(spec.model, tuple(input_shape)),
        "layers": rows,
        "graphs": _graphs(backend, state, batch),
    }

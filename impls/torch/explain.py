"""The task's model as PyTorch builds, shows and traces it; ``harness/explain.py`` runs it.

Every ``impls/<fw>/explain.py`` has the same ``explain(spec, input_shape)``,
returning plain JSON values, so the three can be read side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from harness.backend import Batch, Options
from harness.data.batching import random_batch
from harness.explain import EXAMPLE_BATCH, clip_lines, op_table
from harness.spec import Shape, TaskSpec, masked_inputs, networks, task_layers, task_param_count
from impls.torch import layers, train
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
    # every Chain layers.build_network makes names its children by spec layer name
    # (the children of a helper inside a layer, e.g. a Recurrent's ``rnn``, are not)
    return {
        name: child
        for chain in model.modules()
        if isinstance(chain, layers.Chain)
        for name, child in chain.named_children()
    }


def _autograd_nodes(*roots: Any) -> list[str]:
    """Every node of the backward graphs below ``roots``, once each, by class name."""
    seen, stack, names = set(), list(roots), []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue  # None: an input that needs no gradient (the targets)
        seen.add(id(node))
        names.append(type(node).__name__)
        stack.extend(child for child, _ in node.next_functions)
    return names


Objectives = Callable[..., list[tuple[torch.Tensor, list[torch.nn.Parameter]]]]


def _objectives(backend: TorchBackend, state: TorchState, batch: Batch) -> tuple[Objectives, tuple]:
    """What one training step differentiates, as ``fn(*inputs) -> [(objective, the
    parameters it updates)]`` (the step's own functions from ``train``, l1 included),
    and the inputs: one pair for a model, two for a gan (the discriminator's, then
    the generator's through the same discriminator: the update between them is eager)."""
    for net in state.nets.values():
        net.model.train()
    if state.gan:
        g, d = state.nets["generator"], state.nets["discriminator"]
        generate, d_objective, g_objective = train.gan_objectives(g, d, state.l1)

        def gan(x: torch.Tensor, z: torch.Tensor):
            fake = generate(z)
            return [(d_objective(x, fake.detach()), d.params), (g_objective(fake), g.params)]

        return gan, (backend._x(batch.x), backend._x(batch.z))
    net = state.nets["model"]
    objective = train.objective(net, state.loss, state.l1)

    def model(x: torch.Tensor, y: torch.Tensor):
        return [(objective(x, y), net.params)]

    return model, (backend._x(batch.x), backend._y(state, batch.y))


def _graphs(backend: TorchBackend, state: TorchState, batch: Batch) -> list[dict[str, Any]]:
    objectives, inputs = _objectives(backend, state, batch)
    losses = [loss for loss, _ in objectives(*inputs)]
    autograd = op_table(
        "autograd graph (loss.grad_fn, walked by next_functions)",
        _autograd_nodes(*(loss.grad_fn for loss in losses)),
        "recorded as the forward runs; optimizer.step() runs eagerly outside it"
        + ("; both networks' objectives" if state.gan else ""),
    )

    # trainable parameters only (the networks' params): autograd.grad refuses
    # RNN/LSTM's frozen bias_hh
    def forward_backward(*inputs: torch.Tensor):
        return tuple(
            grad
            for loss, params in objectives(*inputs)
            for grad in torch.autograd.grad(loss, params)
        )

    # make_fx: the aten-level graph of forward + loss + backward, what AOTAutograd
    # hands Inductor in graph mode (Dynamo's own capture is slower and adds guards).
    # Packing a padded batch reads the lengths' values (the packed batch sizes):
    # allowed here, so they are burnt into this one step's graph
    fx = make_fx(forward_backward, _error_on_data_dependent_ops=False)(*inputs)
    targets = [
        str(n.target).removeprefix("aten.")
        for n in fx.graph.nodes
        if n.op == "call_function" and "getitem" not in str(n.target)
    ]
    gan = "; a gan's two objectives at the same weights (in graph mode: three graphs)"
    traced = op_table(
        "FX graph of forward + loss + backward (make_fx, aten ops)",
        targets,
        "tuple getitem nodes not counted; the optimizer step is not in it"
        + (gan if state.gan else ""),
    )
    return [autograd, traced]


def explain(spec: TaskSpec, input_shape: Shape) -> dict[str, Any]:
    """The spec's model as PyTorch builds it, shows it and traces one training step.

    Args:
        spec: the task (a gan's: both networks, generator first).
        input_shape: one sample's shape, NHWC or [features].

    Returns:
        ``layout``; ``display`` (``print(model)``, clipped) and ``display_by``;
        ``param_count`` (torch's count), ``param_count_by``, ``spec_param_count``;
        ``layers``: one ``{"name", "framework"}`` per spec layer in ``task_layers``
        order; ``graphs``: op tables (``harness.explain.op_table``) of one training step.
    """
    shape = tuple(input_shape)
    backend = TorchBackend()
    backend.configure(Options(mode="eager"))
    state = backend.build(spec, shape, None)
    modules: dict[str, nn.Module] = {}
    masked: dict[str, bool] = {}
    for (_, model_spec, _), net in zip(networks(spec, shape), state.nets.values(), strict=True):
        modules |= _modules_by_name(net.model)
        masked |= masked_inputs(model_spec)
    rows = []
    for layer, _, _ in task_layers(spec, shape):
        module = modules[layer.name]
        line = sequence_line(module, masked[layer.name]) or one_line(module)
        rows.append({"name": layer.name, "framework": line})
    if state.gan:  # one print per network, under its role
        display = "\n".join(f"{role} = {net.model}" for role, net in state.nets.items())
    else:
        display = str(state.model)
    # random_batch, not example_batch: a gan's noise is the batch's z
    batch = random_batch(spec, shape, EXAMPLE_BATCH)
    return {
        "layout": "NCHW",
        "display": clip_lines(display),
        "display_by": "print(model)",
        "param_count": int(backend.param_count(state)),
        "param_count_by": "sum(p.numel() for p in model.parameters() if p.requires_grad)",
        "spec_param_count": task_param_count(spec, shape),
        "layers": rows,
        "graphs": _graphs(backend, state, batch),
    }

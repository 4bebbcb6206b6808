"""The course's lessons in PyTorch; ``harness/lessons.py`` runs them, one process each.

Every ``impls/<fw>/lessons.py`` has the same function names, so the three can
be read side by side. Results are plain JSON values (floats, lists, strings).
"""

from __future__ import annotations

from typing import Any

import torch


def _mean_of_square(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The notes' computation: y = x + 2, z = y * y, t = mean(z)."""
    y = x + 2
    z = y * y
    return y, z, z.mean()


def _graph_lines(fn: Any, depth: int = 0, seen: set[int] | None = None) -> list[str]:
    """The backward graph below ``fn`` as indented lines, one node per line."""
    seen = set() if seen is None else seen
    if fn is None:
        # a None edge is an input that needs no gradient (the constant 2)
        return ["  " * depth + "None (no gradient needed)"]
    name = type(fn).__name__
    if name == "AccumulateGrad":
        name += f" -> x.grad {tuple(fn.variable.shape)}"
    if id(fn) in seen:
        # y * y reaches AddBackward0 twice: print the shared node once
        return ["  " * depth + f"{name} (shared, shown above)"]
    seen.add(id(fn))
    lines = ["  " * depth + name]
    for child, _ in fn.next_functions:
        lines += _graph_lines(child, depth + 1, seen)
    return lines


def autograd() -> dict[str, Any]:
    """The notes' autograd example: t = mean((x + 2)^2) at x = ones(2, 2), and dt/dx.

    Returns:
        ``y``, ``z``, ``t``: the forward values; ``grad_once``: ``x.grad`` after one
        ``backward()``; ``grad_twice``: ``x.grad`` after a second one, which torch
        adds to the first (``"twice_means": "accumulated"``); ``graph``: the
        ``grad_fn`` chain from ``t`` down to the leaf ``x``.
    """
    x = torch.ones(2, 2, requires_grad=True)
    y, z, t = _mean_of_square(x)  # the graph is recorded as these run
    # retain_graph: without it the first backward frees the graph and a second one raises
    t.backward(retain_graph=True)
    grad_once = x.grad.tolist()
    t.backward()
    grad_twice = x.grad.tolist()
    return {
        "y": y.tolist(),
        "z": z.tolist(),
        "t": t.item(),
        "grad_once": grad_once,
        "grad_twice": grad_twice,
        # measured, not asserted: a second call that changes nothing would say "fresh"
        "twice_means": "fresh" if grad_twice == grad_once else "accumulated",
        "graph": ["t.grad_fn, then each node's next_functions:", *_graph_lines(t.grad_fn, 1)],
    }

"""The course's lessons in PyTorch; ``harness/lessons.py`` runs them, one process each.

Every ``impls/<fw>/lessons.py`` has the same function names, so the three can
be read side by side. Results are plain JSON values (floats, lists, strings).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from impls.torch import train


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


# --------------------------------------------------------------------------- shapes

FIXED_BATCHES = [32] * 10
VARYING_BATCHES = [32, 17, 32, 24, 40, 17]


class _Counter:
    """A torch.compile backend that counts the graphs Dynamo hands it and keeps
    each one's input shapes (symbolic ones as ``sN``), its operations, and why it
    ended where it did when that was a graph break, then compiles with Inductor."""

    def __init__(self) -> None:
        self.shapes: list[str] = []
        self.ops: list[str] = []
        self.breaks: list[str] = []  # the reason of each graph that ended in a break
        self._inductor = torch._dynamo.lookup_backend("inductor")

    @property
    def count(self) -> int:
        return len(self.shapes)

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]):
        values = [n.meta.get("example_value") for n in gm.graph.find_nodes(op="placeholder")]
        shown = [str(tuple(v.shape)) for v in values if isinstance(v, torch.Tensor)]
        self.shapes.append(", ".join(shown))
        calls = [n for n in gm.graph.nodes if n.op in ("call_function", "call_method")]
        self.ops.append(", ".join(getattr(n.target, "__name__", str(n.target)) for n in calls))
        reason = getattr(gm, "compile_subgraph_reason", None)  # set by Dynamo on each graph
        if reason is not None and reason.graph_break:
            self.breaks.append(f"after graph {self.count}: {reason.reason.splitlines()[0]}")
        return self._inductor(gm, example_inputs)


def _mlp_step(model: nn.Module, optimizer, counter: _Counter, dynamic: bool | None):
    """The 64-128-10 MLP's SGD step, written as the torch.compile docs write it:
    forward and loss compiled, ``backward()`` and ``optimizer.step()`` eager."""
    forward_loss = torch.compile(
        lambda x, y: F.cross_entropy(model(x), y), backend=counter, dynamic=dynamic
    )

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = forward_loss(x, y)
        loss.backward()
        optimizer.step()
        return loss.item()  # the host read waits for the step

    return step


def shapes() -> dict[str, Any]:
    """torch.compile traces the step once for batches of 32; the first batch of
    another size recompiles it once with a symbolic batch size (automatic dynamic
    shapes), and that graph serves every later size; ``dynamic=True`` traces the
    symbolic graph at once.

    Returns:
        ``traces_fixed``: graphs compiled over 10 batches of 32; ``traces_varying``:
        new graphs over ``VARYING_BATCHES`` in the same compiled step;
        ``seconds_varying``: their wall time (each step synced by reading its loss,
        compiles included); ``traces_remedy``, ``seconds_remedy``: the same batches
        through a fresh ``torch.compile(..., dynamic=True)`` step from the same
        weights; ``graph``: each compiled graph's input shapes, and Dynamo's
        recompile count.
    """
    torch.compiler.reset()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batches = [
        (
            torch.from_numpy(rng.standard_normal((n, 64), dtype=np.float32)),
            torch.from_numpy(rng.integers(0, 10, n)),
        )
        for n in FIXED_BATCHES + VARYING_BATCHES
    ]
    fixed, varying = batches[: len(FIXED_BATCHES)], batches[len(FIXED_BATCHES) :]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    plain, remedy = _Counter(), _Counter()
    step = _mlp_step(model, optimizer, plain, None)
    for x, y in fixed:
        step(x, y)
    traces_fixed = plain.count
    # the remedy starts from these weights and momenta
    start = copy.deepcopy((model.state_dict(), optimizer.state_dict()))

    recompiles_before = train.dynamo_counts()["recompiles"]
    t0 = time.perf_counter()
    plain_losses = [step(x, y) for x, y in varying]
    seconds_varying = time.perf_counter() - t0
    recompiles = train.dynamo_counts()["recompiles"] - recompiles_before

    model.load_state_dict(start[0])
    optimizer.load_state_dict(start[1])
    step = _mlp_step(model, optimizer, remedy, True)
    t0 = time.perf_counter()
    remedy_losses = [step(x, y) for x, y in varying]
    seconds_remedy = time.perf_counter() - t0
    gap = max(abs(a - b) for a, b in zip(plain_losses, remedy_losses, strict=True))
    return {
        "traces_fixed": traces_fixed,
        "traces_varying": plain.count - traces_fixed,
        "seconds_varying": round(seconds_varying, 3),
        "remedy": "torch.compile(..., dynamic=True)",
        "traces_remedy": remedy.count,
        "seconds_remedy": round(seconds_remedy, 3),
        "graph": [
            "one FX graph per guard set, its inputs' shapes (sN: a symbolic size):",
            *(f"  default, graph {i + 1}: {s}" for i, s in enumerate(plain.shapes)),
            *(f"  dynamic=True, graph {i + 1}: {s}" for i, s in enumerate(remedy.shapes)),
            f"  recompiles over the varying batches (Dynamo's count): {recompiles}",
            f"  largest gap between the two runs' losses: {gap:.1e}",
        ],
    }


# --------------------------------------------------------------------------- control flow


def _branchy(x: torch.Tensor) -> torch.Tensor:
    """The notes' function, with a Python if on the data."""
    if x.sum() > 0:
        return x * 2
    return x - 1


def _with_cond(x: torch.Tensor) -> torch.Tensor:
    """The same with both branches in one graph: torch.cond picks one at run time."""
    return torch.cond(x.sum() > 0, lambda x: x * 2, lambda x: x - 1, (x,))


def control_flow() -> dict[str, Any]:
    """torch.compile of a Python ``if`` on a tensor: Dynamo cannot know the branch
    while tracing, so it breaks the graph there; the condition's graph runs, Python
    reads the bool and takes the branch, and the branch taken is compiled as a
    graph of its own (a resume function). ``fullgraph=True`` turns the break into
    an error; ``torch.cond`` keeps both branches in one graph.

    Returns:
        ``outcome``; ``positive``/``negative``: the compiled function's results;
        ``breaks``: graphs Dynamo ended with a break (``gm.compile_subgraph_reason``;
        Dynamo's ``counters["graph_break"]`` misses a data-dependent branch's), and
        the graphs compiled; ``error``: "-"
        (nothing refused); ``remedy``, ``remedy_negative``: torch.cond, compiled
        with fullgraph=True; ``graph``: the break's reason, what fullgraph=True
        says, and each graph's operations.
    """
    torch.compiler.reset()
    pos, neg = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, -2.0, -3.0])
    graphs = _Counter()
    compiled = torch.compile(_branchy, backend=graphs)
    positive, negative = compiled(pos).tolist(), compiled(neg).tolist()
    breaks = len(graphs.breaks)

    torch.compiler.reset()
    try:  # the same function, asked for one graph
        torch.compile(_branchy, fullgraph=True)(neg)
        strict = "fullgraph=True: compiled (no break)"
    except Exception as err:
        strict = f"fullgraph=True refuses: {type(err).__name__}: {str(err).splitlines()[0]}"
    cond_graphs = _Counter()
    remedy_negative = torch.compile(_with_cond, backend=cond_graphs, fullgraph=True)(neg)
    return {
        "outcome": "graph break: Python branches on the tensor" if breaks else "one graph",
        "positive": positive,
        "negative": negative,
        "breaks": f"{breaks} graph break{'' if breaks == 1 else 's'}; {graphs.count} graphs",
        "error": "-",
        "remedy": "torch.cond",
        "remedy_negative": remedy_negative.tolist(),
        "graph": [
            "the graphs Dynamo compiled, their operations:",
            *(f"  graph {i + 1}: {o}" for i, o in enumerate(graphs.ops)),
            *(f"  graph break {r[:100]}" for r in graphs.breaks),
            strict[:160],
            f"torch.cond with fullgraph=True: {cond_graphs.count} graph, both branches inside",
        ],
    }

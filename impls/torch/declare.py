"""What the harness knows of the PyTorch backend without importing torch."""

from __future__ import annotations

NAME = "torch"
TARGET = "impls.torch.backend:TorchBackend"
PACKAGES = ("torch",)  # importable before the backend can load
DISTRIBUTIONS: dict[str, str] = {}  # a package whose pip distribution has another name
EXTRA = "torch"  # pip install -e '.[torch]'
MODES = ("eager", "graph")
MINIMAL = "impls.torch.minimal"  # the hand-written loop rosetta bench compares with
MINIMAL_ONLY: dict[str, str] = {}  # minimal-loop modes with no harness mode -> the one to pair
COLOR = "#1f77b4"  # its colour in every figure of a report

# what this framework does in each lesson (harness.lessons), after the common part
LESSONS = {
    "autograd": (
        "backward() adds into x.grad, so that the gradients of several losses or "
        "minibatches can be summed before one optimizer step (why training loops call "
        "optimizer.zero_grad()); retain_graph=True kept the graph alive for the second "
        "call, so x.grad = 1.5 + 1.5 = 3."
    ),
    "shapes": (
        "torch.compile marks a dimension dynamic after it has changed once (one "
        "recompile, then a shape-generic graph), or at once with dynamic=True / "
        "torch._dynamo.mark_dynamic."
    ),
    "control_flow": (
        "torch.compile splits the graph where Python needs the value (a graph break: "
        "the two halves are compiled, the branch runs in Python) or uses torch.cond."
    ),
}


def thread_env(threads: int) -> dict[str, str | None]:
    """Before import: torch's intra-op pool is OpenMP's (torch.set_num_threads follows
    in configure); 0 leaves the pool at torch's default."""
    return {}

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


def thread_env(threads: int) -> dict[str, str | None]:
    """Before import: torch's intra-op pool is OpenMP's (torch.set_num_threads follows
    in configure); 0 leaves the pool at torch's default."""
    return {}

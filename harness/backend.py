"""The Backend protocol every framework implements, and the lazy registry.

The harness never imports a framework: it names backends by a
``"module:Class"`` target and imports it only inside the cell's own process.

A backend owns numerics only. The runner owns the loop, the clock, the data
order and the files, so one loop times all frameworks alike.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Protocol

import numpy as np

from harness.spec import TaskSpec

Weights = dict[str, np.ndarray]  # canonical names and layouts, see harness/spec.py
State = Any  # whatever the backend needs; the runner only passes it back


@dataclass(frozen=True)
class Batch:
    """One minibatch as the harness hands it to every framework.

    ``x`` is float32 (or float64 in a float64 run) NHWC / [N, features], or int32
    token ids [N, steps]; ``y`` is int32 class ids [N] (or [N, steps]) for softmax
    cross-entropy, float [N, 1] for binary cross-entropy, float [N, outputs] for
    mse. A gan's batch has real samples ``x``, no ``y``, and the generator's noise
    ``z`` [N, latent].
    """

    x: np.ndarray
    y: np.ndarray | None
    z: np.ndarray | None = None


@dataclass(frozen=True)
class Options:
    """How a cell runs; fixed before the framework is imported."""

    mode: str = "eager"
    device: str = "cpu"  # "cpu" or "gpu" (the runner resolves "auto")
    threads: int = 0  # 0: the framework's default
    dtype: str = "float32"  # or "float64" (equivalence checks)


class Backend(Protocol):
    """What the runner and the tests call. See impls/<fw>/backend.py."""

    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]]

    def configure(self, options: Options) -> None:
        """Called once, right after import: threads, device, precision."""

    def versions(self) -> dict[str, str]:
        """Framework package versions, e.g. {"torch": "2.13.0"}."""

    def device_name(self) -> str:
        """The device the cell actually runs on, in words."""

    def build(self, spec: TaskSpec, input_shape: tuple[int, ...], weights: Weights | None) -> State:
        """Model + optimizer for ``spec``; ``weights=None`` keeps the framework's own init."""

    def train_step(self, state: State, batch: Batch) -> tuple[State, Any]:
        """One optimizer step; returns the new state and the batch loss (before the
        step) as a scalar that ``float()`` accepts. The runner reads it, which syncs.

        A gan recipe (``spec.recipe.kind == "gan"``) does two steps: the
        discriminator on ``batch.x`` (label 1) and ``generator(batch.z)`` (label 0),
        then the generator against the updated discriminator (label 1 for its
        samples, the non-saturating loss), with the same ``z``; each network has its
        own optimizer built from the recipe. It returns the pair (discriminator loss,
        generator loss), each taken before its own update."""

    def predict(self, state: State, x: np.ndarray) -> np.ndarray:
        """Model outputs (logits) in inference mode (dropout off) as numpy; a gan's
        generator's samples for noise ``x``."""

    def loss_and_grads(self, state: State, batch: Batch) -> tuple[float, Weights]:
        """Loss and gradients w.r.t. every parameter, canonical names and layouts,
        in inference mode (dropout off), without changing the state. For a gan, at
        the current weights: the discriminator's loss, its gradients w.r.t. the
        discriminator and the generator loss's w.r.t. the generator. The recipe's
        l1 term and label smoothing are part of the loss; clipping is not (it acts
        on the step)."""

    def activations(self, state: State, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output for input ``x`` in inference mode, keyed by the spec's
        layer name (blocks and the layers inside them, as ``harness.spec.walk`` lists
        them), in canonical layout (NHWC images, [N, features] vectors, [N, steps,
        features] sequences); for a gan, noise ``x`` through the generator and its
        samples through the discriminator. Used by the
        equivalence check to name the first layer where frameworks part; it must not
        change the path ``train_step`` runs."""

    def get_weights(self, state: State) -> Weights:
        """Current parameters, canonical names and layouts."""

    def param_count(self, state: State) -> int:
        """Number of trainable scalars, counted by the framework itself."""

    def sync(self, state: State) -> None:
        """Block until all queued device work is done (before reading a clock)."""

    def stats(self, state: State) -> dict[str, Any]:
        """Framework counters, e.g. {"traces": 1}; may be empty."""

    def matmul_flops(self, n: int, repeats: int = 10) -> float:
        """FLOP/s of an ``n x n`` float32 matmul on the cell's device, compiled in graph
        modes, synced, median of ``repeats`` runs after warm-up: the ceiling ``rosetta
        bench`` compares the training step's FLOP/s with; its operands are
        ``matmul_operands(n)``."""


@cache
def matmul_operands(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two ``n x n`` float32 operands of ``matmul_flops``, the same in every
    framework; drawn once per process (the bench worker reads the matmul after
    every turn, and drawing two 2048 x 2048 arrays takes longer than one product of
    them)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in "ab")
    a.flags.writeable = b.flags.writeable = False
    return a, b


MATMUL_WARMUP = 1  # an untimed call first: the compile and the first allocations


def matmul_rate(run: Callable[[], object], n: int, repeats: int) -> float:
    """``2 n^3`` over the median seconds of ``repeats`` calls of ``run`` (one synced
    ``n x n`` matmul), after ``MATMUL_WARMUP`` untimed calls: every backend's
    ``matmul_flops`` times its matmul by this one rule."""
    for _ in range(MATMUL_WARMUP):
        run()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(seconds))


def _no_thread_env(threads: int) -> dict[str, str | None]:
    return {}


@dataclass(frozen=True)
class BackendInfo:
    """What the harness knows of a backend without importing its framework, as the
    backend declares it (``impls/<fw>/declare.py``)."""

    name: str
    target: str  # "module:Class"
    packages: tuple[str, ...]  # what must be importable
    extra: str  # pip extra that installs it
    modes: tuple[str, ...]
    distributions: tuple[tuple[str, str], ...] = ()  # package -> its pip distribution's name
    thread_env: Callable[[int], dict[str, str | None]] = _no_thread_env  # set before import
    minimal: str = ""  # the module of its hand-written loop (rosetta bench), if any
    minimal_only: tuple[tuple[str, str], ...] = ()  # loop modes with no harness mode -> pair
    lessons: tuple[tuple[str, str], ...] = ()  # lesson name -> what this framework does there
    color: str = ""  # its colour in a report's figures ("": one of the others')


BUILTIN = ("impls.torch", "impls.tf", "impls.jax")  # packages with a declare module


def declared(package: str) -> BackendInfo:
    """A backend package's declaration (its ``declare`` module, which imports no framework)."""
    d = importlib.import_module(f"{package}.declare")
    return BackendInfo(
        d.NAME,
        d.TARGET,
        tuple(d.PACKAGES),
        d.EXTRA,
        tuple(d.MODES),
        tuple(d.DISTRIBUTIONS.items()),
        d.thread_env,
        d.MINIMAL,
        tuple(d.MINIMAL_ONLY.items()),
        tuple(getattr(d, "LESSONS", {}).items()),
        getattr(d, "COLOR", ""),
    )


BACKENDS: dict[str, BackendInfo] = {info.name: info for info in map(declared, BUILTIN)}
MODES = ("eager", "graph", "xla")
PLUGINS_ENV = "ROSETTA_BACKENDS"


def plugin_backends(text: str) -> dict[str, BackendInfo]:
    """Backends of one's own, named in ``ROSETTA_BACKENDS``: ``name=module:Class`` items,
    comma-separated, each optionally ``@mode+mode`` (default eager+graph) and
    ``^package+package`` (what must be installed; default none), e.g.
    ``mine=my_pkg.backend:MyBackend@eager^numpy``. The module must be importable (on
    PYTHONPATH) in the cells' processes."""
    found = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, rest = item.partition("=")
        rest, _, packages = rest.partition("^")
        target, _, modes = rest.partition("@")
        if not eq or not name.isidentifier() or ":" not in target:
            raise ValueError(
                f"{PLUGINS_ENV}: {item!r} is not name=module:Class[@mode+mode][^package+package]"
            )
        found[name] = BackendInfo(
            name,
            target,
            tuple(filter(None, packages.split("+"))),
            "",
            tuple((modes or "eager+graph").split("+")),
        )
    return found


BACKENDS.update(plugin_backends(os.environ.get(PLUGINS_ENV, "")))


class BackendUnavailable(RuntimeError):
    """The framework of a backend is not installed."""


def install_hint(info: BackendInfo) -> str:
    if not info.extra:  # a backend of one's own: no extra of ours installs it
        return f"{info.name} is not installed: install {', '.join(info.packages)}"
    return (
        f"{info.name} is not installed: run  pip install -e '.[{info.extra}]'  "
        f"(or '.[all]' for every framework)"
    )


def missing_packages(info: BackendInfo) -> list[str]:
    """Packages of a backend that cannot be found, without importing them."""
    return [p for p in info.packages if importlib.util.find_spec(p) is None]


def package_version(package: str) -> str | None:
    """The installed version of ``package``, under its own name or the distribution a
    backend declares for it."""
    dists = {p: d for info in BACKENDS.values() for p, d in info.distributions}
    for name in (package, dists.get(package, package)):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def load_backend(target: str) -> Backend:
    """Import ``"module:Class"`` and instantiate it (inside the cell process)."""
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise BackendUnavailable(f"cannot import {module_name}: {err}") from err
    return getattr(module, cls_name)()

"""The JAX backend: thin glue over layers.py and train.py.

Pure: the state is a frozen record of pytrees
(parameters, optimizer state, dropout key) plus the step functions built for
them, and ``train_step`` returns a new record instead of changing the old one.
In graph mode the step donates the old record's buffers to XLA, which updates
them in place: keep only the returned state (eager mode leaves the old intact).

Parameters and optimizer states are dicts keyed by network role
(``harness.spec.networks``): ``"model"``, or a gan's ``"generator"`` and
``"discriminator"``, each network split into its own graphdef and ``nnx.State``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax
from flax import nnx

from harness.backend import Batch, Options, Weights, matmul_operands, matmul_rate
from harness.spec import TaskSpec, is_weight, networks, task_layers
from impls.jax import declare, layers, train

# XLA's CPU client names the threads of its intra-op pool ("XLAEigen", with the
# "tf_" prefix of tsl's thread factory); Linux lists them under /proc/self/task
_POOL_THREAD = "tf_XLAEigen"
_STEP = "jit(train_step)"  # the graph-mode train step's name in JAX's compile events


@dataclasses.dataclass(frozen=True)
class JaxState:
    """What a JAX run carries from step to step."""

    params: dict[str, nnx.State]
    opt_state: dict[str, optax.OptState]
    key: jax.Array
    # (role, *parameter path) -> canonical name (layers.bindings), for weights and grads
    names: dict[tuple, str] = dataclasses.field(repr=False)
    gan: bool
    train_step: Callable = dataclasses.field(repr=False)
    predict: Callable = dataclasses.field(repr=False)
    loss_and_grads: Callable = dataclasses.field(repr=False)
    activations: Callable = dataclasses.field(repr=False)
    traces: train.Traces = dataclasses.field(default_factory=dict)
    # compilations of "jit(train_step)" in this process before this state was built
    compiles_before: int = 0


class JaxBackend:
    """Flax NNX + Optax; modes: eager (op by op) and graph (``jax.jit``)."""

    name: ClassVar[str] = declare.NAME
    modes: ClassVar[tuple[str, ...]] = declare.MODES

    def __init__(self) -> None:
        self.options = Options()
        # looked up in configure: the first device lookup starts XLA's CPU client,
        # which sizes its thread pool then, once per process
        self._device: jax.Device | None = None

    def configure(self, options: Options) -> None:
        """Record the options, size XLA's CPU pool, pick the device, and switch on
        x64 for float64.

        ``threads`` > 0 becomes ``PJRT_NPROC``, which XLA's CPU client reads (in
        ``xla::DefaultThreadPoolSize``) when it starts, on the first device lookup
        below; a client started earlier in the process keeps its pool, and
        ``stats`` counts the pool's threads either way. The runner's XLA_FLAGS
        (``--xla_cpu_multi_thread_eigen=false`` for one thread) are read at import.
        x64 is left on once switched on (tests configure several dtypes in one
        process): every layer and input gets its dtype explicitly instead.
        """
        if options.mode not in self.modes:
            raise ValueError(f"JAX has modes {self.modes}, not {options.mode!r}")
        if options.threads > 0:
            os.environ.setdefault("PJRT_NPROC", str(options.threads))
        if options.dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        self._device = self._find_device(options.device)
        self.options = options

    @staticmethod
    def _find_device(kind: str) -> jax.Device:
        if kind == "cpu":
            return jax.devices("cpu")[0]
        try:
            return jax.devices("gpu")[0]
        except RuntimeError as err:
            raise RuntimeError(
                "device 'gpu' asked for, but JAX sees no GPU: install the CUDA build "
                "(pip install -e '.[jax-gpu]') and check nvidia-smi"
            ) from err

    @property
    def device(self) -> jax.Device:
        if self._device is None:
            self._device = self._find_device(self.options.device)
        return self._device

    def versions(self) -> dict[str, str]:
        return {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
        }

    def device_name(self) -> str:
        return "cpu" if self.device.platform == "cpu" else self.device.device_kind

    def build(
        self, spec: TaskSpec, input_shape: tuple[int, ...], weights: Weights | None
    ) -> JaxState:
        shape = tuple(input_shape)
        if weights is None:
            models = layers.build_networks(spec, shape, self.options.dtype)
        else:
            # the shared start overwrites every parameter, so Flax's initializers need
            # not run: built abstractly (shapes and dtypes only), then filled. Running
            # them op by op compiles each one, 1.3-4.6 s a build on this CPU.
            dtype = self.options.dtype
            abstract = nnx.eval_shape(lambda: layers.build_networks(spec, shape, dtype))
            # eval_shape hands a dict back with its keys sorted; the roles keep their order
            models = {role: abstract[role] for role, _, _ in networks(spec, shape)}
            layers.set_weights(models, weights)
            layers.check_concrete(models)
        nets, params, names = {}, {}, {}
        for role, model in models.items():
            own = layers.bindings(model)
            # split once; the steps merge the static graphdef with these pytrees
            graphdef, params[role] = nnx.split(model, nnx.Param)
            nets[role] = train.Net(graphdef, frozenset(p for p, n in own.items() if is_weight(n)))
            names.update({(role, *path): name for path, name in own.items()})
        params = jax.device_put(params, self.device)
        r, mode, traces = spec.recipe, self.options.mode, {}
        tx = train.make_optimizer(r.optimizer, r.clip_norm)
        order = tuple(layer.name for layer, _, _ in task_layers(spec, shape))
        gan = r.kind == "gan"
        if gan:
            g, d = nets["generator"], nets["discriminator"]
            train_step = train.make_gan_train_step(g, d, r, tx, mode, traces)
            loss_and_grads = train.make_gan_loss_and_grads(g, d, r, mode, traces)
        else:
            train_step = train.make_train_step(nets["model"], r, tx, mode, traces)
            loss_and_grads = train.make_loss_and_grads(nets["model"], r, mode, traces)
        first = next(iter(nets))  # what predict runs: the model, or a gan's generator
        # one optimizer state per network, from the same recipe; put on the device:
        # Adam's step count comes out of init uncommitted, the step's outputs are
        # committed, and jit compiles anew for that difference alone (the second
        # step would compile the whole step again, without a retrace)
        opt_state = jax.device_put({role: tx.init(p) for role, p in params.items()}, self.device)
        return JaxState(
            params=params,
            opt_state=opt_state,
            key=jax.device_put(jax.random.key(r.seed), self.device),
            names=names,
            gan=gan,
            train_step=train_step,
            predict=train.make_predict(nets[first], first, mode, traces),
            loss_and_grads=loss_and_grads,
            activations=train.make_activations(nets, order, mode, traces),
            traces=traces,
            compiles_before=train.compiles(_STEP),
        )

    def _put(self, a: np.ndarray) -> jax.Array | np.ndarray:
        """An input in the run's dtype (labels stay integer), as the mode takes it.

        Graph mode hands the jitted functions numpy arrays: jit's C++ dispatch
        copies them to the device of the committed parameters, which costs less
        than making a ``jax.Array`` in Python first (``jax.device_put``: about 0.2 ms,
        8% of the bench MLP's step at batch 128, measured in one process). Eager mode
        puts them on the device, so that every operation runs in JAX.
        """
        dtype = a.dtype if np.issubdtype(a.dtype, np.integer) else self.options.dtype
        a = np.asarray(a, dtype=dtype)
        return a if self.options.mode == "graph" else jax.device_put(a, self.device)

    def _inputs(self, state: JaxState, batch: Batch) -> tuple[Any, Any]:
        # a gan's second input is the generator's noise, a supervised one's the targets
        return self._put(batch.x), self._put(batch.z if state.gan else batch.y)

    def train_step(self, state: JaxState, batch: Batch) -> tuple[JaxState, Any]:
        params, opt_state, key, loss = state.train_step(
            state.params, state.opt_state, state.key, *self._inputs(state, batch)
        )
        return dataclasses.replace(state, params=params, opt_state=opt_state, key=key), loss

    def predict(self, state: JaxState, x: np.ndarray) -> np.ndarray:
        return np.asarray(state.predict(state.params, self._put(x)))

    def loss_and_grads(self, state: JaxState, batch: Batch) -> tuple[float, Weights]:
        loss, grads = state.loss_and_grads(state.params, *self._inputs(state, batch))
        return float(loss), _canonical(grads, state.names)

    def activations(self, state: JaxState, x: np.ndarray) -> dict[str, np.ndarray]:
        # NHWC / [N, steps, features] / [N, features] already: Flax's own layouts
        outs = state.activations(state.params, self._put(x))
        return {name: np.asarray(a) for name, a in outs.items()}

    def get_weights(self, state: JaxState) -> Weights:
        return _canonical(state.params, state.names)

    def param_count(self, state: JaxState) -> int:
        return sum(leaf.size for leaf in jax.tree.leaves(state.params))

    def sync(self, state: JaxState) -> None:
        jax.block_until_ready((state.params, state.opt_state, state.key))

    def stats(self, state: JaxState) -> dict[str, Any]:
        """Thread pool and compilation counters (see the comments for each)."""
        # XLA compilations of the jitted train step since build, as JAX reports them
        # (one per input signature: shapes, dtypes, placement); eager mode: 0
        compiles = train.compiles(_STEP) - state.compiles_before
        threads, threads_by = pool_threads()
        return {
            # XLA's CPU intra-op thread pool, which runs every CPU computation
            "threads": threads,
            "threads_by": threads_by,
            # False when XLA_FLAGS has --xla_cpu_multi_thread_eigen=false (the runner's
            # one-thread setting): Eigen's matmuls and convolutions then run single-
            # threaded, whatever the pool's size
            "xla_cpu_multi_thread_eigen": "--xla_cpu_multi_thread_eigen=false"
            not in os.environ.get("XLA_FLAGS", ""),
            # times Python ran the train step under jax.jit's tracer (0 in eager mode)
            "traces": state.traces.get("train_step", 0),
            "compiles": compiles,
            # compiles after the first: a new input shape or dtype (jit has no graph
            # breaks: a function traces whole or fails)
            "recompiles": max(0, compiles - 1),
            # predict and the check's functions trace once per input shape
            "predict_traces": state.traces.get("predict", 0),
            "loss_and_grads_traces": state.traces.get("loss_and_grads", 0),
            # every XLA compilation in this process so far, any function: eager mode
            # compiles each primitive once per shape and dtype, graph mode each jit
            "xla_compiles": train.compiles(),
        }

    def matmul_flops(self, n: int, repeats: int = 10) -> float:
        """``2 n^3`` over the median seconds of an ``n x n`` float32 matmul on the
        cell's device: ``jax.jit(jnp.matmul)`` in graph mode, ``jnp.matmul`` as is in
        eager mode (one primitive, which JAX compiles and caches just the same),
        at the default precision the training step uses; timed by
        ``harness.backend.matmul_rate``, each call ending in ``block_until_ready``."""
        a, b = (jax.device_put(m, self.device) for m in matmul_operands(n))
        matmul = jax.jit(jnp.matmul) if self.options.mode == "graph" else jnp.matmul
        return matmul_rate(lambda: matmul(a, b).block_until_ready(), n, repeats)


def _canonical(params: dict[str, nnx.State], names: dict[tuple, str]) -> Weights:
    """Parameter-shaped pytrees of every network (parameters or gradients) as one
    dict of canonical numpy arrays."""
    out: Weights = {}
    for role, state in params.items():
        own = {path[1:]: name for path, name in names.items() if path[0] == role}
        out.update(layers.to_canonical(state, own))
    return out


def pool_threads() -> tuple[int | str, str]:
    """The size of XLA's CPU intra-op thread pool, and how it was found.

    Counted: the pool's threads, by name, in /proc (Linux; the pool exists once a
    device was looked up). Otherwise what ``xla::DefaultThreadPoolSize`` picks:
    ``PJRT_NPROC`` or ``NPROC`` if set, else the CPUs this process may run on.
    """
    tasks = Path("/proc/self/task")
    if tasks.is_dir():
        count = 0
        for task in tasks.iterdir():
            try:
                count += (task / "comm").read_text().strip() == _POOL_THREAD
            except OSError:  # the thread ended while we looked
                continue
        if count:
            return count, f"{_POOL_THREAD} threads in /proc/self/task"
    for var in ("PJRT_NPROC", "NPROC"):
        if re.fullmatch(r"\d+", os.environ.get(var, "")):
            return int(os.environ[var]), f"${var} (XLA's DefaultThreadPoolSize)"
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)), "schedulable CPUs (XLA's DefaultThreadPoolSize)"
    return "default", "unknown: XLA's default, the machine's CPUs"

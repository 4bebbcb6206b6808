"""The JAX backend: thin glue over layers.py and train.py.

Pure, as DESIGN.md asks: the state is a frozen record of pytrees
(parameters, optimizer state, dropout key) plus the step functions built for
them, and ``train_step`` returns a new record instead of changing the old one.
In graph mode the step donates the old record's buffers to XLA, which updates
them in place: keep only the returned state (eager mode leaves the old intact).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import flax
import jax
import jaxlib
import numpy as np
import optax
from flax import nnx

from harness.backend import Batch, Options, Weights
from harness.spec import TaskSpec, walk
from impls.jax import layers, train


@dataclasses.dataclass(frozen=True)
class JaxState:
    """What a JAX run carries from step to step."""

    params: nnx.State
    opt_state: optax.OptState
    key: jax.Array
    # parameter path -> canonical name (layers.canonical_names), for weights and grads
    names: dict[tuple, str] = dataclasses.field(repr=False)
    train_step: Callable = dataclasses.field(repr=False)
    predict: Callable = dataclasses.field(repr=False)
    loss_and_grads: Callable = dataclasses.field(repr=False)
    activations: Callable = dataclasses.field(repr=False)
    traces: train.Traces = dataclasses.field(default_factory=dict)


class JaxBackend:
    """Flax NNX + Optax; modes: eager (op by op) and graph (``jax.jit``)."""

    name: ClassVar[str] = "jax"
    modes: ClassVar[tuple[str, ...]] = ("eager", "graph")

    def __init__(self) -> None:
        self.options = Options()
        self._device = jax.devices("cpu")[0]

    def configure(self, options: Options) -> None:
        """Record the options, pick the device, and switch on x64 for float64.

        Thread counts reach XLA through XLA_FLAGS, which the runner sets before
        JAX is imported; they cannot change afterwards, so they are only recorded.
        x64 is left on once switched on (tests configure several dtypes in one
        process): every layer and input gets its dtype explicitly instead.
        """
        if options.mode not in self.modes:
            raise ValueError(f"JAX has modes {self.modes}, not {options.mode!r}")
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

    def versions(self) -> dict[str, str]:
        return {
            "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "optax": optax.__version__,
        }  # fmt: skip

    def device_name(self) -> str:
        return "cpu" if self._device.platform == "cpu" else self._device.device_kind

    def build(
        self, spec: TaskSpec, input_shape: tuple[int, ...], weights: Weights | None
    ) -> JaxState:
        model = layers.build_model(spec, input_shape, self.options.dtype)
        if weights is not None:
            layers.set_weights(model, weights)
        names = layers.canonical_names(model)
        # split once; the steps merge the static graphdef with these pytrees
        graphdef, params = nnx.split(model, nnx.Param)
        params = jax.device_put(params, self._device)
        tx = train.make_optimizer(spec.recipe.optimizer)
        mode, loss, traces = self.options.mode, spec.recipe.loss, {}
        order = tuple(layer.name for layer, _, _ in walk(spec.model.layers, tuple(input_shape)))
        return JaxState(
            params=params,
            opt_state=tx.init(params),
            key=jax.device_put(jax.random.key(spec.recipe.seed), self._device),
            names=names,
            train_step=train.make_train_step(graphdef, loss, tx, mode, traces),
            predict=train.make_predict(graphdef, mode, traces),
            loss_and_grads=train.make_loss_and_grads(graphdef, loss, mode, traces),
            activations=train.make_activations(graphdef, order, mode, traces),
            traces=traces,
        )

    def _put(self, a: np.ndarray) -> jax.Array:
        # labels stay integer; features and float targets take the run's dtype
        dtype = a.dtype if np.issubdtype(a.dtype, np.integer) else self.options.dtype
        return jax.device_put(np.asarray(a, dtype=dtype), self._device)

    def train_step(self, state: JaxState, batch: Batch) -> tuple[JaxState, Any]:
        params, opt_state, key, loss = state.train_step(
            state.params, state.opt_state, state.key, self._put(batch.x), self._put(batch.y)
        )
        return dataclasses.replace(state, params=params, opt_state=opt_state, key=key), loss

    def predict(self, state: JaxState, x: np.ndarray) -> np.ndarray:
        return np.asarray(state.predict(state.params, self._put(x)))

    def loss_and_grads(self, state: JaxState, batch: Batch) -> tuple[float, Weights]:
        loss, grads = state.loss_and_grads(state.params, self._put(batch.x), self._put(batch.y))
        return float(loss), layers.to_canonical(grads, state.names)

    def activations(self, state: JaxState, x: np.ndarray) -> dict[str, np.ndarray]:
        # NHWC / [N, steps, features] / [N, features] already: Flax's own layouts
        outs = state.activations(state.params, self._put(x))
        return {name: np.asarray(a) for name, a in outs.items()}

    def get_weights(self, state: JaxState) -> Weights:
        return layers.to_canonical(state.params, state.names)

    def param_count(self, state: JaxState) -> int:
        return sum(leaf.size for leaf in jax.tree.leaves(state.params))

    def sync(self, state: JaxState) -> None:
        jax.block_until_ready((state.params, state.opt_state, state.key))

    def stats(self, state: JaxState) -> dict[str, Any]:
        # jit traces of the train step (0 in eager mode); predict retraces per input shape
        return {
            "traces": state.traces.get("train_step", 0),
            "predict_traces": state.traces.get("predict", 0),
            "loss_and_grads_traces": state.traces.get("loss_and_grads", 0),
        }

"""TFBackend: the harness' Backend protocol over impls/tf/layers.py and train.py."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from harness.backend import BACKENDS, Batch, Options, Weights  # noqa: E402
from harness.spec import TaskSpec  # noqa: E402
from impls.tf import layers, train  # noqa: E402


@dataclass
class TFState:
    """The Keras model and optimizer plus the mode's compiled steps (changed in place)."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    mode: str
    device: str  # a tf.device string, "/CPU:0" or "/GPU:0"
    dtype: tf.DType
    x_dtype: tf.DType  # the input's: int32 token ids, or the run's dtype
    train_fn: train.Step
    predict_fn: Any
    grad_fn: Any
    # the variables and their canonical names, in the order grad_fn returns gradients
    bindings: list[layers.Binding]
    layer_names: list[str]  # every spec layer, in harness.spec.walk's order
    traces: Counter = field(default_factory=Counter)
    # the per-layer outputs model of activations(), made on its first call
    activation_model: keras.Model | None = None


def _set_threads(threads: int) -> None:
    """Intra-op threads = ``threads``, inter-op = 1; 0 keeps TensorFlow's default.

    TensorFlow fixes both when its runtime starts and raises on a later change,
    so a repeat call that asks for the current count does nothing.
    """
    if threads <= 0:
        return
    cfg = tf.config.threading
    if cfg.get_intra_op_parallelism_threads() == threads:
        return
    try:
        cfg.set_intra_op_parallelism_threads(threads)
        cfg.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        warnings.warn(
            f"TensorFlow's runtime has started; its thread pools keep their size, "
            f"not the {threads} threads asked for (set threads before the first op)",
            stacklevel=3,
        )


class TFBackend:
    """TensorFlow 2 with Keras 3 layers and a GradientTape training step."""

    name: ClassVar[str] = "tf"
    modes: ClassVar[tuple[str, ...]] = BACKENDS["tf"].modes

    def __init__(self) -> None:
        self._options = Options()

    def configure(self, options: Options) -> None:
        """Threads, device and dtype for the following builds; safe to repeat."""
        if options.mode not in self.modes:
            raise ValueError(f"tf has modes {self.modes}, not {options.mode!r}")
        if options.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, not {options.dtype!r}")
        if options.device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', not {options.device!r}")
        _set_threads(options.threads)
        if options.device == "gpu" and not tf.config.list_physical_devices("GPU"):
            raise RuntimeError(
                "device 'gpu' asked for, but TensorFlow sees no GPU "
                "(tensorflow-cpu is CPU-only: install the 'tf-gpu' extra on a CUDA machine)"
            )
        self._options = options

    @property
    def _device(self) -> str:
        return "/GPU:0" if self._options.device == "gpu" else "/CPU:0"

    def versions(self) -> dict[str, str]:
        return {"tensorflow": tf.__version__, "keras": keras.__version__}

    def device_name(self) -> str:
        if self._options.device != "gpu":
            return "cpu"
        gpu = tf.config.list_physical_devices("GPU")[0]
        return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)

    def build(
        self, spec: TaskSpec, input_shape: tuple[int, ...], weights: Weights | None
    ) -> TFState:
        """Model, optimizer and the mode's steps; ``weights=None`` keeps Keras' initializers."""
        opts = self._options
        # seeds Keras' own initializers, so a native-init run is reproducible too
        keras.utils.set_random_seed(spec.recipe.seed)
        with tf.device(self._device):
            # XLA cannot compile cuDNN's fused GRU / LSTM kernels: Keras' own loop there
            use_cudnn = False if opts.mode == "xla" else "auto"
            model = layers.build_model(spec, input_shape, opts.dtype, use_cudnn)
            if weights is not None:
                layers.set_weights(model, weights)
            optimizer = train.make_optimizer(spec.recipe.optimizer, opts.dtype)
            # its slots exist before the first trace, so no variable is made inside one
            optimizer.build(model.trainable_variables)
        loss = train.loss_fn(spec.recipe.loss, opts.dtype)
        binds = layers.bindings(model)
        traces: Counter = Counter()
        wd = spec.recipe.optimizer.weight_decay
        return TFState(
            model=model,
            optimizer=optimizer,
            mode=opts.mode,
            device=self._device,
            dtype=tf.as_dtype(opts.dtype),
            x_dtype=tf.as_dtype(layers.input_dtype(spec, opts.dtype)),
            train_fn=train.make_train_step(model, loss, optimizer, wd, opts.mode, traces),
            predict_fn=train.make_predict(model, opts.mode, traces),
            grad_fn=train.make_grad_step(
                model, loss, [b.variable for b in binds], opts.mode, traces
            ),
            bindings=binds,
            layer_names=layers.spec_layer_names(spec.model.layers),
            traces=traces,
        )

    def _tensors(self, state: TFState, batch: Batch) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.convert_to_tensor(batch.x, dtype=state.x_dtype)
        # class ids stay integers; 0/1 and regression targets take the run's dtype
        y_dtype = tf.int32 if np.issubdtype(batch.y.dtype, np.integer) else state.dtype
        return x, tf.convert_to_tensor(batch.y, dtype=y_dtype)

    def train_step(self, state: TFState, batch: Batch) -> tuple[TFState, tf.Tensor]:
        with tf.device(state.device):
            loss = state.train_fn(*self._tensors(state, batch))
        return state, loss

    def predict(self, state: TFState, x: np.ndarray) -> np.ndarray:
        with tf.device(state.device):
            out = state.predict_fn(tf.convert_to_tensor(x, dtype=state.x_dtype))
        return out.numpy()

    def loss_and_grads(self, state: TFState, batch: Batch) -> tuple[float, Weights]:
        with tf.device(state.device):
            loss, grads = state.grad_fn(*self._tensors(state, batch))
        # canonical layouts: a GRU's gradients get its weights' gate permutation
        return float(loss), layers.canonical(state.bindings, grads)

    def activations(self, state: TFState, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every spec layer's output for ``x`` (dropout off), keyed by layer name.

        Runs eagerly in every mode a second functional model over the same Keras
        layers (layers.activation_model), so the compiled steps and the training
        model stay as they are. Keras is NHWC and [N, steps, features]: the outputs
        are canonical as they come.
        """
        if state.activation_model is None:
            state.activation_model = layers.activation_model(state.model, state.layer_names)
        with tf.device(state.device):
            outs = state.activation_model(
                tf.convert_to_tensor(x, dtype=state.x_dtype), training=False
            )
        return {name: outs[name].numpy() for name in state.layer_names}

    def get_weights(self, state: TFState) -> Weights:
        return layers.get_weights(state.model)

    def param_count(self, state: TFState) -> int:
        return sum(int(np.prod(v.shape)) for v in state.model.trainable_variables)

    def sync(self, state: TFState) -> None:
        tf.test.experimental.sync_devices()

    def stats(self, state: TFState) -> dict[str, Any]:
        """Trace counts of the compiled steps (0 in eager mode, where nothing traces)."""
        graph = state.mode != "eager"
        out: dict[str, Any] = {
            "traces": state.traces["train_step"] if graph else 0,
            "predict_traces": state.traces["predict"] if graph else 0,
        }
        if state.device == "/GPU:0":
            out["gpu_peak_bytes"] = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        return out

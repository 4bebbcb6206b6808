"""TFBackend: the harness' Backend protocol over impls/tf/layers.py and train.py."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from harness.backend import Batch, Options, Weights, matmul_operands, matmul_rate
from harness.spec import RecipeSpec, TaskSpec, networks, walk
from impls.tf import declare, layers, train


@dataclass
class TFState:
    """The task's networks and the mode's compiled steps (changed in place).

    ``nets``: the model, or a gan's generator then discriminator, each a Keras
    model with its own optimizer (train.Net).
    """

    nets: list[train.Net]
    mode: str
    device: str  # a tf.device string, "/CPU:0" or "/GPU:0"
    dtype: tf.DType
    x_dtype: tf.DType  # the first network's input: int32 token ids, or the run's dtype
    gan: bool
    train_fn: train.Step
    predict_fn: Any
    grad_fn: Any
    # every network's variables and their canonical names, in the order grad_fn
    # returns gradients (the nets' variables one net after the other)
    bindings: list[layers.Binding]
    layer_names: list[list[str]]  # each net's spec layers, in harness.spec.walk's order
    # each net's per-layer outputs model of activations(), made on its first call
    activation_models: list[keras.Model] = field(default_factory=list)

    @property
    def model(self) -> keras.Model:
        """The model, or a gan's generator (what predict runs)."""
        return self.nets[0].model


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

    name: ClassVar[str] = declare.NAME
    modes: ClassVar[tuple[str, ...]] = declare.MODES

    def __init__(self) -> None:
        self._options = Options()
        self._matmul: Any = None  # matmul_flops' function, traced once per size

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
        self._matmul = None  # matmul_flops' function follows the mode

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
        """Networks, optimizers and the mode's steps; ``weights=None`` keeps Keras' initializers."""
        opts, recipe = self._options, spec.recipe
        gan = recipe.kind == "gan"
        # seeds Keras' own initializers, so a native-init run is reproducible too
        keras.utils.set_random_seed(recipe.seed)
        # XLA cannot compile cuDNN's fused GRU / LSTM kernels: Keras' own loop there
        use_cudnn = False if opts.mode == "xla" else "auto"
        with tf.device(self._device):
            models = layers.build_networks(spec, input_shape, opts.dtype, use_cudnn)
            if weights is not None:
                layers.set_weights(models, weights)
            nets, binds = [], []
            for model in models.values():
                net, net_binds = _net(model, recipe, opts)
                nets.append(net)
                binds += net_binds
        names = [
            [layer.name for layer, _, _ in walk(model_spec.layers, shape)]
            for _, model_spec, shape in networks(spec, input_shape)
        ]
        if gan:
            gen, disc = nets
            train_fn = train.make_gan_train_step(gen, disc, recipe, opts.dtype, opts.mode)
            grad_fn = train.make_gan_loss_and_grads(gen, disc, recipe, opts.dtype, opts.mode)
        else:
            train_fn = train.make_train_step(nets[0], recipe, opts.dtype, opts.mode)
            grad_fn = train.make_loss_and_grads(nets[0], recipe, opts.dtype, opts.mode)
        return TFState(
            nets=nets,
            mode=opts.mode,
            device=self._device,
            dtype=tf.as_dtype(opts.dtype),
            x_dtype=tf.as_dtype(layers.input_dtype(spec.model, opts.dtype)),
            gan=gan,
            train_fn=train_fn,
            predict_fn=train.make_predict(nets[0].model, opts.mode),
            grad_fn=grad_fn,
            bindings=binds,
            layer_names=names,
        )

    def _tensors(self, state: TFState, batch: Batch) -> tuple[tf.Tensor, tf.Tensor]:
        """The step's two inputs: (x, y), or a gan's (real samples, noise)."""
        if state.gan:
            x = tf.convert_to_tensor(batch.x, dtype=state.dtype)
            return x, tf.convert_to_tensor(batch.z, dtype=state.dtype)
        x = tf.convert_to_tensor(batch.x, dtype=state.x_dtype)
        # class ids stay integers; 0/1 and regression targets take the run's dtype
        y_dtype = tf.int32 if np.issubdtype(batch.y.dtype, np.integer) else state.dtype
        return x, tf.convert_to_tensor(batch.y, dtype=y_dtype)

    def train_step(self, state: TFState, batch: Batch) -> tuple[TFState, Any]:
        """One step: the loss tensor, or a gan's (discriminator loss, generator loss)."""
        with tf.device(state.device):
            loss = state.train_fn(*self._tensors(state, batch))
        return state, tuple(loss) if state.gan else loss

    def predict(self, state: TFState, x: np.ndarray) -> np.ndarray:
        with tf.device(state.device):
            out = state.predict_fn(tf.convert_to_tensor(x, dtype=state.x_dtype))
        return out.numpy()

    def loss_and_grads(self, state: TFState, batch: Batch) -> tuple[float, Weights]:
        with tf.device(state.device):
            loss, grads = state.grad_fn(*self._tensors(state, batch))
        # canonical layouts: a GRU's gradients get its weights' gate permutation
        return float(loss), layers.to_canonical(state.bindings, grads)

    def activations(self, state: TFState, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every spec layer's output for ``x`` (dropout off), keyed by layer name; a
        gan's generator layers on noise ``x``, then its discriminator's on G(x).

        Runs eagerly in every mode a second functional model per network over the
        same Keras layers (layers.activation_model), so the compiled steps and the
        training models stay as they are. Keras is NHWC and [N, steps, features]:
        the outputs are canonical as they come.
        """
        if not state.activation_models:
            state.activation_models = [
                layers.activation_model(net.model, names)
                for net, names in zip(state.nets, state.layer_names, strict=True)
            ]
        out: dict[str, np.ndarray] = {}
        with tf.device(state.device):
            inputs = tf.convert_to_tensor(x, dtype=state.x_dtype)
            for net, model, names in zip(
                state.nets, state.activation_models, state.layer_names, strict=True
            ):
                outs = model(inputs, training=False)
                out.update({name: outs[name].numpy() for name in names})
                inputs = net.model(inputs, training=False)  # the next network's input
        return out

    def get_weights(self, state: TFState) -> Weights:
        return layers.to_canonical(state.bindings, [b.variable for b in state.bindings])

    def param_count(self, state: TFState) -> int:
        return sum(
            int(np.prod(v.shape)) for net in state.nets for v in net.model.trainable_variables
        )

    def sync(self, state: TFState) -> None:
        tf.test.experimental.sync_devices()

    def stats(self, state: TFState) -> dict[str, Any]:
        """Threads and trace counts (see the comments for each).

        TensorFlow reports no compile or graph-break counters to Python: XLA's
        compilations (xla mode) are counted only inside its C++ runtime, and
        ``tf.function`` has no graph breaks (AutoGraph converts the whole Python
        function; what it cannot convert runs once, at trace time, or raises).
        """
        threads, threads_by = pool_threads()
        out: dict[str, Any] = {
            # the intra-op pool, which runs the ops' kernels (Eigen, oneDNN) and XLA's
            # CPU code; the runner sets inter-op to 1 when it sets threads
            "threads": threads,
            "threads_by": threads_by,
            # times tf.function traced the train step (one per new input signature;
            # tf.function's own counter); 0 in eager mode, which traces nothing
            "traces": train.tracing_count(state.train_fn),
            # predict traces once per input shape (a last, smaller batch: a second)
            "predict_traces": train.tracing_count(state.predict_fn),
            "loss_and_grads_traces": train.tracing_count(state.grad_fn),
        }
        if state.device == "/GPU:0":
            out["gpu_peak_bytes"] = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        return out

    def matmul_flops(self, n: int, repeats: int = 10) -> float:
        """FLOP/s of an ``n x n`` float32 matmul on the cell's device, timed by
        ``harness.backend.matmul_rate``: ``tf.matmul`` in eager mode, a
        ``tf.function`` of it in graph mode (``jit_compile=True`` in xla), as the
        training step runs; each call synced by ``sync_devices`` (a CPU op is done
        when it returns; a GPU's is queued). The ``tf.function`` is made once, so a
        call after the first with the same ``n`` retraces nothing (the bench worker
        calls this after every turn)."""
        mode = self._options.mode
        if self._matmul is None:
            self._matmul = (
                tf.matmul if mode == "eager" else tf.function(tf.matmul, jit_compile=mode == "xla")
            )
        matmul = self._matmul
        with tf.device(self._device):
            a, b = (tf.constant(m) for m in matmul_operands(n))

            def run() -> None:
                matmul(a, b)
                tf.test.experimental.sync_devices()

            return matmul_rate(run, n, repeats)


def _net(
    model: keras.Model, recipe: RecipeSpec, opts: Options
) -> tuple[train.Net, list[layers.Binding]]:
    """One network (inside the build's tf.device) with its optimizer, and its bindings."""
    binds = layers.bindings(model)
    variables = [b.variable for b in binds]
    # the steps train the bound variables: one a binding missed would never move
    if {id(v) for v in variables} != {id(v) for v in model.trainable_variables}:
        raise AssertionError(f"{model.name}: layers.bindings misses trainable variables")
    optimizer = train.make_optimizer(recipe.optimizer, opts.dtype)
    # its slots exist before the first trace, so no variable is made inside one
    optimizer.build(variables)
    return train.Net(model, optimizer, variables, layers.penalized(binds)), binds


def pool_threads() -> tuple[int, str]:
    """TensorFlow's intra-op thread count, and how it was read.

    ``tf.config.threading.get_intra_op_parallelism_threads()`` is 0 unless set; the
    CPU device's pool (tensorflow/core/common_runtime/local_device.cc) then takes
    ``TF_NUM_INTRAOP_THREADS``, else ``port::MaxParallelism()``: the CPUs this process
    may run on (its affinity mask). XLA's CPU pool (``tf_XLAEigen``) takes the same
    count.
    """
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured > 0:
        return configured, "tf.config.threading.get_intra_op_parallelism_threads()"
    env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "default (tf.config says 0): TF_NUM_INTRAOP_THREADS"
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0)), "default (tf.config says 0): CPUs in the affinity mask"
    return os.cpu_count() or 1, "default (tf.config says 0): os.cpu_count()"

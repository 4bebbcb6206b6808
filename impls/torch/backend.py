"""TorchBackend: the harness' Backend protocol over layers.py and train.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from harness.backend import Batch, Options, Weights
from harness.spec import TaskSpec
from impls.torch import layers, train

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_interop_set = False


def _set_threads(threads: int) -> None:
    """Intra-op threads as asked; inter-op to 1, which torch allows only once per
    process and only before any parallel work, so later calls keep what is set."""
    global _interop_set
    if threads <= 0:
        return
    torch.set_num_threads(threads)
    if not _interop_set:
        _interop_set = True
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # parallel work already ran in this process: torch keeps its pool


@dataclass
class TorchState:
    """The model and optimizer (changed in place), and the step functions over them."""

    model: layers.Net
    optimizer: torch.optim.Optimizer
    loss: train.LossFn
    target_dtype: torch.dtype  # int64 class ids for softmax cross-entropy
    step: train.Step
    predict: Any
    counters: dict[str, train.CompileCounter]  # graph mode: graphs compiled per function


class TorchBackend:
    """PyTorch: ``eager`` runs nn.Modules as they are, ``graph`` uses torch.compile."""

    name: ClassVar[str] = "torch"
    modes: ClassVar[tuple[str, ...]] = ("eager", "graph")

    def __init__(self) -> None:
        self.configure(Options())

    def configure(self, options: Options) -> None:
        if options.mode not in self.modes:
            raise ValueError(f"torch has modes {self.modes}, not {options.mode!r}")
        if options.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {options.dtype!r}")
        if options.device == "gpu" and not torch.cuda.is_available():
            raise RuntimeError(
                "device 'gpu' asked for, but torch sees no CUDA GPU "
                f"(torch {torch.__version__}; a CPU-only build, or no driver?)"
            )
        _set_threads(options.threads)
        self.mode = options.mode
        self.dtype = _DTYPES[options.dtype]
        self.device = torch.device("cuda" if options.device == "gpu" else "cpu")

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "cpu"

    def build(self, spec: TaskSpec, input_shape: tuple[int, ...], weights: Weights | None):
        # one seed for torch's native initializers and the dropout masks
        torch.manual_seed(spec.recipe.seed)
        counters = {}
        if self.mode == "graph":
            # a fresh model gets a fresh compile cache: a process that builds many
            # models (the tests) would otherwise pile up guarded entries on the same
            # code and, from the 9th, hit Dynamo's recompile limit and run eager
            # with only a logged warning
            torch.compiler.reset()
            counters = {"train_step": train.CompileCounter(), "predict": train.CompileCounter()}
        model = layers.build_model(spec, input_shape, self.dtype, self.device)
        if weights is not None:
            layers.set_weights(model, weights)
        # the trainable parameters only: RNN/LSTM's frozen bias_hh stays zero
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = train.make_optimizer(spec.recipe.optimizer, trainable)
        loss = train.loss_fn(spec.recipe.loss)
        step = train.make_train_step(model, loss, optimizer, self.mode, counters.get("train_step"))
        ids = spec.recipe.loss == "softmax_cross_entropy"
        target_dtype = torch.long if ids else self.dtype
        predict = train.make_predict(model, self.mode, counters.get("predict"))
        return TorchState(model, optimizer, loss, target_dtype, step, predict, counters)

    def _x(self, x: np.ndarray) -> torch.Tensor:
        if np.issubdtype(x.dtype, np.integer):  # token ids: int32, as nn.Embedding takes them
            return torch.as_tensor(x, device=self.device)
        t = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if t.dim() == 4:  # NHWC -> NCHW, contiguous so every step sees the same strides
            t = t.permute(0, 3, 1, 2).contiguous()
        return t

    def _y(self, state: TorchState, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(y, dtype=state.target_dtype, device=self.device)

    def train_step(self, state: TorchState, batch: Batch) -> tuple[TorchState, torch.Tensor]:
        return state, state.step(self._x(batch.x), self._y(state, batch.y))

    def predict(self, state: TorchState, x: np.ndarray) -> np.ndarray:
        return state.predict(self._x(x)).cpu().numpy()

    def loss_and_grads(self, state: TorchState, batch: Batch) -> tuple[float, Weights]:
        bound = layers.bindings(state.model)  # trainable only: no frozen biases
        params = [p for p, _ in bound.values()]
        x, y = self._x(batch.x), self._y(state, batch.y)
        loss, grads = train.loss_and_grads(state.model, state.loss, x, y, params)
        return float(loss), {
            name: layers.to_canonical(g, layout)
            for (name, (_, layout)), g in zip(bound.items(), grads, strict=True)
        }

    def activations(self, state: TorchState, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every spec layer's output, NHWC / [N, F] / [N, steps, F], in eval mode. Eager
        in every mode: it walks the modules itself, so the compiled train step and
        predict are untouched."""
        if state.model.training:  # dropout off; train_step switches back to train mode
            state.model.eval()
        with torch.inference_mode():
            outputs = layers.layer_outputs(state.model, self._x(x))
            return {name: layers.activation_to_canonical(t) for name, t in outputs.items()}

    def get_weights(self, state: TorchState) -> Weights:
        return layers.get_weights(state.model)

    def param_count(self, state: TorchState) -> int:
        return sum(p.numel() for p in state.model.parameters() if p.requires_grad)

    def sync(self, state: TorchState) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def stats(self, state: TorchState) -> dict[str, Any]:
        """Graphs torch.compile built for the train step and predict (0 in eager mode)."""
        counts = {name: c.count for name, c in state.counters.items()}
        return {"traces": counts.get("train_step", 0), "predict_traces": counts.get("predict", 0)}

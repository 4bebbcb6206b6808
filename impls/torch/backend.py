"""TorchBackend: the harness' Backend protocol over layers.py and train.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from harness.backend import Batch, Options, Weights, matmul_operands, matmul_rate
from harness.spec import Optimizer, TaskSpec, is_weight
from impls.torch import declare, layers, train

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
    """The networks and their optimizers (changed in place), and the step functions."""

    nets: dict[str, train.Net]  # by role: "model", or "generator" and "discriminator"
    loss: train.LossFn
    l1: float
    target_dtype: torch.dtype  # int64 class ids for softmax cross-entropy
    step: train.Step
    predict: Any
    counters: dict[str, train.CompileCounter]  # graph mode: graphs compiled per function
    dynamo_at_build: dict[str, int]  # Dynamo's process-wide counts when built

    @property
    def gan(self) -> bool:
        return "generator" in self.nets

    @property
    def model(self) -> layers.Model:
        """The network ``predict`` runs: the model, or a gan's generator."""
        return self.nets["generator" if self.gan else "model"].model


def _net(model: layers.Model, opt: Optimizer) -> train.Net:
    # the trainable parameters only: RNN/LSTM's frozen bias_hh stays zero
    params = [p for p in model.parameters() if p.requires_grad]
    weights = [p for name, (p, _) in layers.bindings(model).items() if is_weight(name)]
    return train.Net(model, params, weights, train.make_optimizer(opt, params))


class TorchBackend:
    """PyTorch: ``eager`` runs nn.Modules as they are, ``graph`` uses torch.compile."""

    name: ClassVar[str] = declare.NAME
    modes: ClassVar[tuple[str, ...]] = declare.MODES

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
        r = spec.recipe
        models = layers.build_networks(spec, input_shape, self.dtype, self.device)
        if weights is not None:
            layers.set_weights(models, weights)
        nets = {role: _net(model, r.optimizer) for role, model in models.items()}
        loss = train.loss_fn(r.loss, r.label_smoothing)
        if r.kind == "gan":
            g, d = nets["generator"], nets["discriminator"]
            step = train.make_gan_train_step(g, d, r, self.mode, counters.get("train_step"))
        else:
            step = train.make_train_step(
                nets["model"], loss, r, self.mode, counters.get("train_step")
            )
        ids = r.loss == "softmax_cross_entropy"
        target_dtype = torch.long if ids else self.dtype
        first = next(iter(models.values()))  # the model, or the generator
        predict = train.make_predict(first, self.mode, counters.get("predict"))
        return TorchState(
            nets, loss, r.l1, target_dtype, step, predict, counters, train.dynamo_counts()
        )

    def _x(self, x: np.ndarray) -> torch.Tensor:
        if np.issubdtype(x.dtype, np.integer):  # token ids: int32, as nn.Embedding takes them
            return torch.as_tensor(x, device=self.device)
        t = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if t.dim() == 4:  # NHWC -> NCHW, contiguous so every step sees the same strides
            t = t.permute(0, 3, 1, 2).contiguous()
        return t

    def _y(self, state: TorchState, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(y, dtype=state.target_dtype, device=self.device)

    def train_step(self, state: TorchState, batch: Batch) -> tuple[TorchState, Any]:
        if state.gan:  # (d_loss, g_loss)
            return state, state.step(self._x(batch.x), self._x(batch.z))
        return state, state.step(self._x(batch.x), self._y(state, batch.y))

    def predict(self, state: TorchState, x: np.ndarray) -> np.ndarray:
        # a generator of images makes NCHW ones: NHWC, like every canonical array
        return layers.activation_to_canonical(state.predict(self._x(x)))

    def loss_and_grads(self, state: TorchState, batch: Batch) -> tuple[float, Weights]:
        if state.gan:
            return self._gan_loss_and_grads(state, batch)
        net = state.nets["model"]
        bound = layers.bindings(net.model)  # trainable only: no frozen biases
        params = [p for p, _ in bound.values()]
        x, y = self._x(batch.x), self._y(state, batch.y)
        loss, grads = train.make_loss_and_grads(net, state.loss, state.l1)(x, y, params)
        return float(loss), _canonical_grads(bound, grads)

    def _gan_loss_and_grads(self, state: TorchState, batch: Batch) -> tuple[float, Weights]:
        g, d = state.nets["generator"], state.nets["discriminator"]
        g_bound, d_bound = layers.bindings(g.model), layers.bindings(d.model)
        loss_and_grads = train.make_gan_loss_and_grads(g, d, state.l1)
        g_params, d_params = ([p for p, _ in b.values()] for b in (g_bound, d_bound))
        x, z = self._x(batch.x), self._x(batch.z)
        loss, d_grads, g_grads = loss_and_grads(x, z, g_params, d_params)
        return float(loss), {
            **_canonical_grads(d_bound, d_grads),
            **_canonical_grads(g_bound, g_grads),
        }

    def activations(self, state: TorchState, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every spec layer's output, NHWC / [N, F] / [N, steps, F], in eval mode; a
        gan's generator layers on noise ``x``, then its discriminator's on the samples.
        Eager in every mode: it walks the modules itself, so the compiled train step
        and predict are untouched."""
        nets = [net.model for net in state.nets.values()]  # generator before discriminator
        for model in nets:
            if model.training:  # dropout off; train_step switches back to train mode
                model.eval()
        outputs: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            h = self._x(x)
            for model in nets:  # each network on the last one's output, in torch's layout
                seen = layers.activations(model, h)
                h = next(reversed(seen.values()))
                outputs.update(seen)
            return {name: layers.activation_to_canonical(t) for name, t in outputs.items()}

    def get_weights(self, state: TorchState) -> Weights:
        return layers.get_weights({role: net.model for role, net in state.nets.items()})

    def param_count(self, state: TorchState) -> int:
        return sum(p.numel() for net in state.nets.values() for p in net.params)

    def sync(self, state: TorchState) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def stats(self, state: TorchState) -> dict[str, Any]:
        """Threads, and what torch.compile did since build (0 in eager mode).

        - ``threads``: torch's intra-op thread pool (``torch.get_num_threads()``);
          ``interop_threads``: its inter-op pool (the backend sets 1 when asked for
          a thread count);
        - ``traces``: graphs the train step's compiled functions handed to Inductor
          (Dynamo traces a function once per graph): 1 for a model, 3 for a gan
          (generator forward, and each network's objective), more after a graph
          break or a retrace; ``predict_traces`` the same for predict;
        - ``compiles``, ``recompiles``, ``graph_breaks``, ``graphs``: Dynamo's own
          counters (see ``train.dynamo_counts``), over every compiled function of the
          process since build: the train step's and predict's; ``graph_breaks`` is
          at least the graphs of those two that ended at a break (Dynamo's counter
          misses a data-dependent branch's break; the compile backend sees it).
        """
        threads, threads_by = pool_threads()
        counts = {name: c.count for name, c in state.counters.items()}
        now = train.dynamo_counts()
        # clamped: a later build's torch.compiler.reset() clears the per-frame counts
        dynamo = {k: max(0, now[k] - state.dynamo_at_build[k]) for k in now}
        # each count is a lower bound: Dynamo's misses data-dependent branches, the
        # backend's misses a break with no operation before it (no graph to compile)
        seen = sum(c.breaks for c in state.counters.values())
        dynamo["graph_breaks"] = max(dynamo["graph_breaks"], seen)
        return {
            "threads": threads,
            "threads_by": threads_by,
            "interop_threads": torch.get_num_interop_threads(),
            "traces": counts.get("train_step", 0),
            "predict_traces": counts.get("predict", 0),
            **dynamo,
        }

    def matmul_flops(self, n: int, repeats: int = 10) -> float:
        """FLOP/s of an ``n x n`` float32 ``a @ b`` on the cell's device, timed by
        ``harness.backend.matmul_rate``: ``torch.compile``d in graph mode (Inductor
        hands a lone matmul to the same BLAS/oneDNN kernel as eager)."""
        a, b = (torch.tensor(m, device=self.device) for m in matmul_operands(n))
        # a Python function: Dynamo traces Python frames, torch.matmul itself has none
        matmul = torch.compile(_matmul) if self.mode == "graph" else _matmul

        def run() -> None:
            matmul(a, b)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

        return matmul_rate(run, n, repeats)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b


def _canonical_grads(bound: dict[str, layers.Binding], grads) -> Weights:
    """Gradients in the order of ``bound``'s parameters, as canonical arrays."""
    return {
        name: layers.to_canonical(g, layout)
        for (name, (_, layout)), g in zip(bound.items(), grads, strict=True)
    }


def pool_threads() -> tuple[int, str]:
    """torch's intra-op thread count, and how it was read."""
    return torch.get_num_threads(), "torch.get_num_threads()"

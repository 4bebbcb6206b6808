"""A tiny numpy backend (dense layers and activations, SGD with momentum) that lets
the harness tests drive the real runner with no framework installed.

``ROSETTA_FAKE_FAULT`` injects a failure: raise, crash, hang, nan, params, or slow (6 s
more in build, a cell that is surely still running a moment after it started), in every
cell; or a comma-separated list of ``fault@task`` items, each in the cells of that task
only (e.g. ``hang@xor,crash@xor_single_layer``).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import numpy as np

from harness.backend import Batch, Options, Weights, matmul_operands
from harness.spec import TaskSpec, networks, walk

ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, a: a * (1 - a)),
    "tanh": (np.tanh, lambda z, a: 1 - a**2),
}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _bce(logits, label: float) -> float:
    z = logits.reshape(-1)
    return float(np.mean(np.maximum(z, 0) - z * label + np.log1p(np.exp(-np.abs(z)))))


def _faults() -> list[tuple[str, str | None]]:
    """(fault, task or None for every task) for each item of ROSETTA_FAKE_FAULT."""
    items = [i.strip() for i in os.environ.get("ROSETTA_FAKE_FAULT", "").split(",")]
    return [(f, t or None) for f, _, t in (i.partition("@") for i in items if i)]


class NumpyBackend:
    name: ClassVar[str] = "fake"
    modes: ClassVar[tuple[str, ...]] = ("eager", "graph")
    task: str | None = None  # known from build() on: faults for a task apply from there

    def _fault(self) -> str:
        for fault, task in _faults():
            if task is None or task == self.task:
                return fault
        return ""

    def configure(self, options: Options) -> None:
        self.options = options
        if self._fault() == "crash":
            os.abort()

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def device_name(self) -> str:
        return "cpu (numpy)"

    def build(self, spec: TaskSpec, input_shape, weights: Weights | None) -> dict[str, Any]:
        self.task = spec.name
        if self._fault() == "crash":  # crash@task: the task was not known in configure()
            os.abort()
        if self._fault() == "slow":
            time.sleep(6)
        nets = {}
        for role, model, shape in networks(spec, tuple(input_shape)):
            nets[role] = []
            for layer, _, _ in walk(model.layers, shape):
                if layer.type not in ("dense", "flatten", *ACTIVATIONS):
                    raise NotImplementedError(f"the numpy backend has no {layer.type} layer")
                nets[role].append(layer)
        if weights is None:
            raise NotImplementedError("the numpy backend has no native initializer")
        params = {k: v.copy() for k, v in weights.items()}
        velocity = {k: np.zeros_like(v) for k, v in params.items()}
        layers = nets.get("model", nets.get("generator"))
        return {
            "spec": spec,
            "layers": layers,
            "d_layers": nets.get("discriminator"),
            "params": params,
            "velocity": velocity,
            "steps": 0,
        }

    def _forward(self, state, x, seen=None, layers=None):
        p, tape = state["params"], []
        a = x.reshape(len(x), -1)
        for layer in state["layers"] if layers is None else layers:
            if layer.type == "dense":
                tape.append(("dense", layer.name, a))
                a = a @ p[f"{layer.name}.kernel"] + self._bias(p, layer.name)
            elif layer.type in ACTIVATIONS:
                z = a
                a = ACTIVATIONS[layer.type][0](z)
                tape.append((layer.type, z, a))
            if seen is not None:
                seen[layer.name] = a
        return a, tape

    def _bias(self, params, name):
        return params.get(f"{name}.bias", 0)

    def activations(self, state, x):
        seen = {}
        self._forward(state, x, seen)
        return seen

    def _loss_grad(self, state, batch: Batch):
        out, tape = self._forward(state, batch.x)
        loss_name, n = state["spec"].recipe.loss, len(out)
        if loss_name == "softmax_cross_entropy":
            e = np.exp(out - out.max(1, keepdims=True))
            prob = e / e.sum(1, keepdims=True)
            loss = -np.mean(np.log(prob[np.arange(n), batch.y] + 1e-12))
            g = prob
            g[np.arange(n), batch.y] -= 1
            g /= n
        elif loss_name == "binary_cross_entropy":
            s = 1 / (1 + np.exp(-out))
            loss = np.mean(np.maximum(out, 0) - out * batch.y + np.log1p(np.exp(-np.abs(out))))
            g = (s - batch.y) / out.size
        else:
            loss = np.mean((out - batch.y) ** 2)
            g = 2 * (out - batch.y) / out.size
        grads, _ = self._backward(state, tape, g)
        return float(loss), grads

    def _backward(self, state, tape, g):
        """Gradients of the tape's parameters, and the gradient at its input."""
        grads = {}
        for entry in reversed(tape):
            if entry[0] == "dense":
                _, name, a_in = entry
                grads[f"{name}.kernel"] = a_in.T @ g
                if f"{name}.bias" in state["params"]:
                    grads[f"{name}.bias"] = g.sum(0)
                g = g @ state["params"][f"{name}.kernel"].T
            else:
                kind, z, a = entry
                g = g * ACTIVATIONS[kind][1](z, a)
        return grads, g

    def _sgd(self, state, grads):
        opt = state["spec"].recipe.optimizer
        for k, g in grads.items():
            g = g + opt.weight_decay * state["params"][k]
            state["velocity"][k] = opt.momentum * state["velocity"][k] + g
            state["params"][k] -= opt.learning_rate * state["velocity"][k]

    def _gan_grads(self, state, batch: Batch):
        """The discriminator's loss and gradients, and a function giving the generator's
        loss and gradients against the discriminator as it is when called."""
        n = len(batch.x)
        fake, g_tape = self._forward(state, batch.z)
        out_r, tape_r = self._forward(state, batch.x, layers=state["d_layers"])
        out_f, tape_f = self._forward(state, fake, layers=state["d_layers"])
        d_loss = _bce(out_r, 1.0) + _bce(out_f, 0.0)
        grads, _ = self._backward(state, tape_r, (_sigmoid(out_r) - 1) / n)
        fake_grads, _ = self._backward(state, tape_f, _sigmoid(out_f) / n)
        d_grads = {k: grads[k] + fake_grads[k] for k in grads}

        def generator():
            out, tape = self._forward(state, fake, layers=state["d_layers"])
            _, g_at_fake = self._backward(state, tape, (_sigmoid(out) - 1) / n)
            g_grads, _ = self._backward(state, g_tape, g_at_fake)
            return _bce(out, 1.0), g_grads

        return d_loss, d_grads, generator

    def train_step(self, state, batch: Batch):
        if state["d_layers"] is not None:
            d_loss, d_grads, generator = self._gan_grads(state, batch)
            self._sgd(state, d_grads)
            g_loss, g_grads = generator()
            self._sgd(state, g_grads)
            state["steps"] += 1
            return state, (d_loss, g_loss)
        loss, grads = self._loss_grad(state, batch)
        if self._fault() == "hang":
            time.sleep(3600)
        if self._fault() == "nan" and state["steps"] == 2:
            loss = float("nan")
        if self._fault() == "raise":
            raise ValueError("injected failure")
        self._sgd(state, grads)
        state["steps"] += 1
        return state, loss

    def predict(self, state, x):
        return self._forward(state, x)[0]

    def loss_and_grads(self, state, batch):
        if state["d_layers"] is not None:
            d_loss, d_grads, generator = self._gan_grads(state, batch)
            return d_loss, {**d_grads, **generator()[1]}
        return self._loss_grad(state, batch)

    def get_weights(self, state) -> Weights:
        return {k: v.copy() for k, v in state["params"].items()}

    def param_count(self, state) -> int:
        n = sum(v.size for v in state["params"].values())
        return n + 1 if self._fault() == "params" else n

    def sync(self, state) -> None:
        pass

    def stats(self, state) -> dict[str, Any]:
        return {"traces": 0}

    def matmul_flops(self, n: int, repeats: int = 10) -> float:
        a, b = matmul_operands(n)
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - t0)
        return 2 * n**3 / float(np.median(seconds))


class DropsBiasBackend(NumpyBackend):
    """A deliberately wrong backend: forgets the bias of the layer named 'hidden'
    in the forward pass (the kind of slip the equivalence check must catch)."""

    def _bias(self, params, name):
        return 0 if name == "hidden" else super()._bias(params, name)

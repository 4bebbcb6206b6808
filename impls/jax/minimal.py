"""The training loop a Flax NNX user would write, for ``rosetta bench overhead``.

Reads ``{"model": "mlp" | "lenet", "batch": B, "steps": N, "mode": "eager" |
"graph" | "functional"}`` on stdin, trains N steps on random numpy data and emits
the step-time summary (``run``); ``rosetta bench`` takes the loop (``loop``) and
runs it in turns with the harness's step, in one process. Written as Flax's NNX tutorials write it: an ``nnx.Module``,
an ``nnx.Optimizer``, ``nnx.value_and_grad`` and ``optimizer.update`` in a train
step that graph mode wraps in ``nnx.jit`` (eager mode calls it as is). Mode
"functional" runs the same step through Flax's functional API under ``jax.jit``
instead (``nnx.split`` once, ``nnx.merge`` inside the step), the form Flax's
performance guide recommends for the least Python on each call, and the one the
harness's backend uses.
"""

import json
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.timing import step_summary
from harness.worker import emit


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        sizes = [28 * 28, 512, 256, 128, 64, 10]
        self.layers = nnx.List(
            [nnx.Linear(i, o, rngs=rngs) for i, o in zip(sizes, sizes[1:], strict=False)]
        )

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers[:-1]:
            x = nnx.relu(layer(x))
        return self.layers[-1](x)


class LeNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 10, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(10, 20, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.fc = nnx.Linear(4 * 4 * 20, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        return self.fc(x.reshape(x.shape[0], -1))


def loss_fn(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)  # in place: the model's parameters and the momentum
    return loss


def functional_step(graphdef, tx):
    """Flax's functional API: parameters as a pytree, merged into the modules inside
    the step, which ``jax.jit`` compiles (no NNX graph traversal on each call)."""

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(nnx.merge(graphdef, p), x, y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def make_step(model, tx, graph: bool, style: str):
    """``step(x, y) -> loss``, updating the model's parameters: the tutorials'
    ``nnx.jit`` of ``train_step`` (style "nnx"), or ``functional_step`` under
    ``jax.jit``, the old buffers donated (style "functional")."""
    if style == "nnx":
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        jitted = nnx.jit(train_step) if graph else train_step
        return lambda x, y: jitted(model, optimizer, x, y)
    graphdef, params = nnx.split(model)
    fn = functional_step(graphdef, tx)
    fn, state = jax.jit(fn, donate_argnums=(0, 1)) if graph else fn, [params, tx.init(params)]

    def step(x, y):
        state[0], state[1], loss = fn(*state, x, y)
        return loss

    return step


def loop(cfg: dict) -> Callable[[int], tuple[list[float], float]]:
    """``steps(k)``: train k more steps; each step's seconds and the last loss."""
    batch, mode = cfg["batch"], cfg["mode"]
    model = {"mlp": MLP, "lenet": LeNet}[cfg["model"]](rngs=nnx.Rngs(0))
    tx = optax.sgd(0.02, momentum=0.9)
    style = "functional" if mode == "functional" else "nnx"
    step = make_step(model, tx, mode != "eager", style)

    rng = np.random.default_rng(0)
    x_all = rng.random((2048, 28, 28, 1), dtype=np.float32)
    y_all = rng.integers(0, 10, size=2048)
    per_epoch = len(x_all) // batch
    done = 0

    def steps(k: int) -> tuple[list[float], float]:
        nonlocal done
        times = []
        for i in range(done, done + k):
            start = (i % per_epoch) * batch  # the next slice in order, wrapping around
            t0 = time.perf_counter()
            x = jnp.asarray(x_all[start : start + batch])
            y = jnp.asarray(y_all[start : start + batch])
            loss = float(step(x, y))  # a host read: waits for the step
            times.append(time.perf_counter() - t0)
        done += k
        return times, loss

    return steps


def run(cfg: dict) -> dict:
    """Train ``cfg["steps"]`` steps; the step-time summary."""
    times, last = loop(cfg)(cfg["steps"])
    return {**step_summary(times), "steps": len(times), "last_loss": last}


def main() -> None:
    emit("record", record=run(json.loads(sys.stdin.read())))


if __name__ == "__main__":
    main()

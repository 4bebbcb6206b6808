"""The training loop a TensorFlow user would write, for ``rosetta bench overhead``.

Reads ``{"model": "mlp" | "lenet", "batch": B, "steps": N, "mode": "eager" |
"graph" | "xla" | "fit"}`` on stdin, trains N steps on random numpy data and
emits the step-time summary (``run``); ``rosetta bench`` takes the loop
(``loop``) and runs it in turns with the harness's step, in one process. Written as TensorFlow's guide "Writing a training
loop from scratch" writes it: a Keras model, a ``tf.GradientTape`` step with
``optimizer.apply_gradients``, ``@tf.function`` in graph mode (``jit_compile=True``
in xla). Mode "fit" is Keras' own loop instead, ``model.compile`` + ``model.fit``,
each batch timed by a callback.
"""

import json
import sys
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from harness.timing import step_summary
from harness.worker import emit


def build(name: str) -> keras.Model:
    if name == "mlp":
        return keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                layers.Flatten(),
                layers.Dense(512, activation="relu"),
                layers.Dense(256, activation="relu"),
                layers.Dense(128, activation="relu"),
                layers.Dense(64, activation="relu"),
                layers.Dense(10),
            ]
        )
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(10, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(20, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(10),
        ]
    )


class BatchTimer(keras.callbacks.Callback):
    """Each batch's seconds in ``model.fit``; reading the loss syncs, as in the loop."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps, self.times = steps, []

    def on_train_batch_begin(self, batch, logs=None):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last = float(logs["loss"])
        self.times.append(time.perf_counter() - self.t0)
        if len(self.times) == self.steps:
            self.model.stop_training = True


def loop(cfg: dict) -> Callable[[int], tuple[list[float], float]]:
    """``steps(k)``: train k more steps; each step's seconds and the last loss."""
    batch, mode = cfg["batch"], cfg["mode"]
    keras.utils.set_random_seed(0)
    model = build(cfg["model"])
    optimizer = keras.optimizers.SGD(learning_rate=0.02, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    rng = np.random.default_rng(0)
    x_all = rng.random((2048, 28, 28, 1), dtype=np.float32)
    y_all = rng.integers(0, 10, size=2048)
    per_epoch = len(x_all) // batch

    if mode == "fit":
        model.compile(optimizer=optimizer, loss=loss_fn)

        def fit_steps(k: int) -> tuple[list[float], float]:
            # each call is one more model.fit, stopped after k batches (Keras keeps
            # the compiled train function from the first call)
            timer = BatchTimer(k)
            model.fit(
                x_all[: per_epoch * batch],
                y_all[: per_epoch * batch],
                batch_size=batch,
                epochs=-(-k // per_epoch),
                shuffle=False,
                verbose=0,
                callbacks=[timer],
            )
            return timer.times, timer.last

        return fit_steps

    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
        return loss

    if mode in ("graph", "xla"):
        train_step = tf.function(train_step, jit_compile=mode == "xla")
    done = 0

    def steps(k: int) -> tuple[list[float], float]:
        nonlocal done
        times = []
        for i in range(done, done + k):
            start = (i % per_epoch) * batch  # the next slice in order, wrapping around
            t0 = time.perf_counter()
            x = tf.convert_to_tensor(x_all[start : start + batch])
            y = tf.convert_to_tensor(y_all[start : start + batch])
            loss = train_step(x, y)
            last = float(loss)  # a host read: the step is done when it returns
            times.append(time.perf_counter() - t0)
        done += k
        return times, last

    return steps


def run(cfg: dict) -> dict:
    """Train ``cfg["steps"]`` steps; the step-time summary."""
    times, last = loop(cfg)(cfg["steps"])
    return {**step_summary(times), "steps": len(times), "last_loss": last}


def main() -> None:
    emit("record", record=run(json.loads(sys.stdin.read())))


if __name__ == "__main__":
    main()

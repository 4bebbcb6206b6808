"""What each recipe kind means to the training loop: its batches, its evaluation on
the test set, and what it adds to the record when training ends.

The loop itself (harness/cell.py) and its clock are the same for every kind; a
backend sees the kind only in ``build`` and ``train_step``. Supervised and
autoencoder recipes share one class (an autoencoder's targets are its inputs);
a gan trains on real samples plus noise the harness draws, and is judged by the
samples its generator makes from fixed noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from harness import data
from harness.backend import Backend, Batch
from harness.data import text
from harness.data.augment import augment
from harness.data.batching import batches, epoch_order, padded_chunks, steps_per_epoch
from harness.metrics import evaluate, gan_metrics, mean_predictor_mse
from harness.spec import TaskSpec

GAN_EVAL_SAMPLES = 1000
RECORDED_SAMPLES = 500  # generated points kept in a gan's record for the report


def predict_all(backend: Backend, state: Any, x: np.ndarray, size: int) -> np.ndarray:
    outs = [backend.predict(state, chunk)[:real] for chunk, real in padded_chunks(x, size)]
    return np.concatenate(outs)


def generate(
    backend: Backend, state: Any, prompt: np.ndarray, length: int, temperature: float, seed: int
) -> dict[str, Any]:
    """Sample a language model one character at a time: the window slides over what it
    wrote. The random numbers come from ``seed`` alone, so frameworks whose
    probabilities agree write the same text."""
    rng = np.random.default_rng([seed, 99])
    window, out = prompt.copy(), []
    for _ in range(length):
        logits = backend.predict(state, window[None])[0, -1].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
        nxt = min(int(np.searchsorted(np.cumsum(p), rng.random())), len(p) - 1)
        out.append(nxt)
        window = np.concatenate([window[1:], np.array([nxt], dtype=window.dtype)])
    return {
        "prompt": text.decode(prompt),
        "text": text.decode(out),
        "temperature": temperature,
        "seed": seed,
    }


class Recipe:
    """Supervised learning (and autoencoders): batches of (input, target)."""

    losses = ("train_loss",)  # what train_step's loss holds, in order

    def __init__(self, spec: TaskSpec, ds: data.Dataset, dtype: str):
        self.spec, self.ds, self.dtype, self.r = spec, ds, dtype, spec.recipe
        self.x_train, self.y_train, self.x_test, self.y_test = data.arrays(ds, spec.recipe, dtype)

    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.x_train), self.r.batch_size, self.r.drop_last)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches, the same for every framework (augmented when asked)."""
        r = self.r
        order = epoch_order(len(self.x_train), r.seed, epoch)
        for i, batch in enumerate(
            batches(self.x_train, self.y_train, r.batch_size, order, r.drop_last)
        ):
            if r.augment is not None:
                rng = np.random.default_rng([r.seed, epoch, i, 17])
                batch = Batch(augment(batch.x, r.augment, rng), batch.y)
            yield batch

    def evaluate(self, backend: Backend, state: Any) -> dict[str, float]:
        out = predict_all(backend, state, self.x_test, self.r.eval_batch_size)
        return evaluate(self.r.loss, self.spec.metrics, out, self.y_test)

    def finish(self, backend: Backend, state: Any, record: dict[str, Any]) -> None:
        """Baselines, recorded layers and samples, after the last epoch."""
        r = self.r
        record["baselines"] = dict(self.ds.info.get("baselines", {}))
        if r.kind == "autoencoder":
            record["baselines"]["mean_image_mse"] = mean_predictor_mse(self.y_train, self.y_test)
        if r.generate:
            record["sample"] = generate(
                backend, state, self.x_test[0], r.generate, r.temperature, r.seed
            )
        if r.record_layer is not None:
            outs = [
                backend.activations(state, chunk)[r.record_layer][:real]
                for chunk, real in padded_chunks(self.x_test, r.eval_batch_size)
            ]
            record["layer_outputs"] = {
                "layer": r.record_layer,
                "values": np.concatenate(outs).round(5).tolist(),
                "labels": self.ds.y_test.tolist(),
            }


class GanRecipe(Recipe):
    """Real samples and the noise for the generator, both drawn by the harness;
    ``train_step`` does a discriminator step then a generator step and returns both
    losses."""

    losses = ("train_loss", "train_g_loss")  # the discriminator's, the generator's

    def __init__(self, spec: TaskSpec, ds: data.Dataset, dtype: str):
        self.spec, self.ds, self.dtype, self.r = spec, ds, dtype, spec.recipe
        self.x_train = data.inputs(ds.x_train, dtype)
        self.x_test = data.inputs(ds.x_test, dtype)
        self.latent = int(spec.model.input_shape[0])  # type: ignore[index]
        self.z_eval = self.noise(GAN_EVAL_SAMPLES, "eval")

    def noise(self, n: int, *where: Any) -> np.ndarray:
        key = [self.r.seed, 23, *(w if isinstance(w, int) else sum(map(ord, w)) for w in where)]
        return np.random.default_rng(key).standard_normal((n, self.latent)).astype(self.dtype)

    def batches(self, epoch: int) -> Iterator[Batch]:
        r = self.r
        order = epoch_order(len(self.x_train), r.seed, epoch)
        dummy = np.zeros(len(self.x_train), dtype=np.int32)
        for i, batch in enumerate(batches(self.x_train, dummy, r.batch_size, order, r.drop_last)):
            yield Batch(batch.x, None, self.noise(len(batch.x), epoch, i))

    def samples(self, backend: Backend, state: Any) -> np.ndarray:
        return predict_all(backend, state, self.z_eval, self.r.eval_batch_size)

    def evaluate(self, backend: Backend, state: Any) -> dict[str, float]:
        return gan_metrics(self.samples(backend, state), self.x_test, self.ds.info["modes"])

    def finish(self, backend: Backend, state: Any, record: dict[str, Any]) -> None:
        record["baselines"] = {}
        points = self.samples(backend, state)[:RECORDED_SAMPLES]
        centres = np.asarray(self.ds.info["modes"]["centres"])
        nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        record["layer_outputs"] = {
            "layer": "generator samples",
            "values": points.round(5).tolist(),
            "labels": nearest.tolist(),
        }


def recipe_for(spec: TaskSpec, ds: data.Dataset, dtype: str) -> Recipe:
    return GanRecipe(spec, ds, dtype) if spec.recipe.kind == "gan" else Recipe(spec, ds, dtype)

"""The check's worker (``python -m harness.trace``): one framework, mode and dtype.

From the shared start, on the runner's batches, it saves what the framework computes
for each task: every layer's activation, the output, the loss, every parameter's
gradient, and the parameters after each of N optimizer steps (dropout off, since masks
cannot match across frameworks). ``harness.check`` starts these and compares them.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from harness import data
from harness.backend import Backend, Batch, Options, load_backend
from harness.init import canonical_weights
from harness.recipes import recipe_for
from harness.spec import Dropout, TaskSpec, map_layers
from harness.worker import WorkerConfig, emit, read_config

Trace = dict[str, np.ndarray]  # "forward/<layer>", "loss", "grad/<param>", "step<i>/<param>"


def without_dropout(spec: TaskSpec) -> TaskSpec:
    """Dropout masks cannot match across frameworks: the check switches them off
    (in every network of the task)."""

    def off(layer):
        return layer.model_copy(update={"rate": 0.0}) if isinstance(layer, Dropout) else layer

    update = {"model": spec.model.model_copy(update={"layers": map_layers(spec.model.layers, off)})}
    if spec.discriminator is not None:
        d = spec.discriminator
        update["discriminator"] = d.model_copy(update={"layers": map_layers(d.layers, off)})
    return spec.model_copy(update=update)


def check_batches(spec: TaskSpec, ds: data.Dataset, dtype: str) -> Iterator[Batch]:
    """The training batches in the runner's order, epoch after epoch."""
    recipe = recipe_for(spec, ds, dtype)
    for epoch in itertools.count():
        yield from recipe.batches(epoch)


def trace(backend: Backend, spec: TaskSpec, dtype: str, steps: int, data_dir=None) -> Trace:
    """Everything one framework computes for the check, in canonical names."""
    spec = without_dropout(spec)
    ds = data.load(spec.data, data_dir)
    shape = ds.sample_shape
    state = backend.build(spec, shape, canonical_weights(spec, shape, dtype))
    stream = check_batches(spec, ds, dtype)
    first = next(stream)
    inputs = first.x if first.z is None else first.z  # a gan's forward starts from noise
    out: Trace = {f"forward/{k}": v for k, v in backend.activations(state, inputs).items()}
    out["output"] = backend.predict(state, inputs)
    loss, grads = backend.loss_and_grads(state, first)
    out["loss"] = np.asarray(loss)
    out.update({f"grad/{k}": v for k, v in grads.items()})
    batch = first
    for step in range(1, steps + 1):
        state, step_loss = backend.train_step(state, batch)
        # a gan's step returns (discriminator loss, generator loss)
        losses = step_loss if isinstance(step_loss, tuple | list) else (step_loss,)
        out[f"step{step}/loss"] = np.asarray([float(v) for v in losses])
        out.update({f"step{step}/{k}": v for k, v in backend.get_weights(state).items()})
        batch = next(stream)
    return out


class TraceConfig(WorkerConfig):
    """One check process: one framework, mode and dtype, several tasks."""

    framework: str
    target: str
    mode: str
    dtype: Literal["float32", "float64"]
    steps: int = Field(ge=1)
    specs: tuple[TaskSpec, ...]
    out_dir: str
    data_dir: str | None = None
    device: str = "cpu"
    threads: int = 0


def trace_name(task: str, framework: str, mode: str, dtype: str) -> str:
    return f"{task}-{framework}-{mode}-{dtype}.npz"


def main() -> None:
    """Worker: one framework, one mode, one dtype, several tasks; saves one .npz each."""
    cfg = read_config(TraceConfig)
    out_dir = Path(cfg.out_dir)
    files, errors = {}, {}
    backend = load_backend(cfg.target)
    backend.configure(Options(cfg.mode, cfg.device, cfg.threads, cfg.dtype))
    for spec in cfg.specs:
        try:
            t = trace(backend, spec, cfg.dtype, cfg.steps, cfg.data_dir)
            path = out_dir / trace_name(spec.name, cfg.framework, cfg.mode, cfg.dtype)
            np.savez(path, **t)
            files[spec.name] = str(path)
        except Exception as err:  # one task's failure is that task's status
            errors[spec.name] = f"{type(err).__name__}: {err}\n" + "".join(
                traceback.format_exception(err)[-4:]
            )
        emit("task", task=spec.name, ok=spec.name in files)
    emit("record", record={"files": files, "errors": errors})


if __name__ == "__main__":
    main()

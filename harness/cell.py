"""One cell of the matrix (task x framework x mode x device), run in its own process.

``python -m harness.cell`` reads its :class:`CellConfig` on stdin, imports the one
framework it needs, trains, and prints events (:mod:`harness.worker`); the last is
the cell's record. The runner owns the loop and the clock here, for every framework.
"""

from __future__ import annotations

import math
import platform
import resource
import sys
import time
import traceback
from typing import Any, Literal

import numpy as np

from harness import data
from harness.backend import Backend, BackendUnavailable, Options, load_backend
from harness.init import canonical_weights
from harness.metrics import reached
from harness.recipes import recipe_for
from harness.spec import TaskSpec, check_model, task_param_count
from harness.timing import Phases, step_summary
from harness.worker import WorkerConfig, emit, read_config


class CellConfig(WorkerConfig):
    """Everything one cell needs, validated once in the driver and again in the worker."""

    spec: TaskSpec
    source: str = "<spec>"  # the task's file, for messages
    framework: str
    target: str  # the backend, "module:Class"
    mode: str
    device: str = "cpu"
    threads: int = 0
    init: Literal["shared", "native"] = "shared"
    dtype: Literal["float32", "float64"] = "float32"
    data_dir: str | None = None
    strict_data: bool = False
    run_id: str | None = None


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def timed_step(backend: Backend, state: Any, batch: Any) -> tuple[Any, list[float], float]:
    """One training step as the harness times it: the new state, the loss values and
    the seconds from the call to a host read of the loss (the step's device work is
    done when it returns)."""
    t0 = time.perf_counter()
    state, loss = backend.train_step(state, batch)
    values = [float(v) for v in (loss if isinstance(loss, tuple | list) else (loss,))]
    return state, values, time.perf_counter() - t0


def train(
    backend: Backend, state: Any, spec: TaskSpec, ds: data.Dataset, dtype: str, record: dict
) -> Any:
    """The training loop every framework and recipe kind shares (the kind's batches
    and evaluation come from harness/recipes.py); fills ``record`` as it goes."""
    r = spec.recipe
    recipe = recipe_for(spec, ds, dtype)
    step_s: list[float] = []
    curve: list[dict[str, Any]] = record["curve"]
    train_s = 0.0
    if recipe.steps_per_epoch() == 0:
        raise ValueError(
            f"batch_size {r.batch_size} is larger than the {len(recipe.x_train)} training "
            "samples (with drop_last = true no step would run): lower recipe.batch_size"
        )
    for epoch in range(r.epochs):
        losses: list[list[float]] = []
        first = len(step_s)
        for batch in recipe.batches(epoch):
            state, values, seconds = timed_step(backend, state, batch)
            step_s.append(seconds)
            if not all(math.isfinite(v) for v in values):
                record["steps"] = len(step_s)
                shown = ", ".join(
                    f"{n[6:]} {v}" for n, v in zip(recipe.losses, values, strict=True)
                )
                raise Diverged(
                    f"loss became {values[0] if len(values) == 1 else shown} "
                    f"at epoch {epoch + 1}, step {len(losses) + 1}"
                )
            losses.append(values)
        train_s += sum(step_s[first:])
        point: dict[str, Any] = {"epoch": epoch + 1}
        point.update(zip(recipe.losses, np.mean(losses, axis=0).tolist(), strict=True))
        point["time_s"] = train_s
        if (epoch + 1) % r.eval_every == 0 or epoch + 1 == r.epochs:
            point.update({f"test_{k}": v for k, v in recipe.evaluate(backend, state).items()})
            if r.target and record["time_to_target_s"] is None:
                value = point.get(f"test_{r.target.metric}")
                if value is not None and reached(r.target.metric, value, r.target.value):
                    record["time_to_target_s"], record["epochs_to_target"] = train_s, epoch + 1
        curve.append(point)
        emit(
            "epoch",
            epoch=epoch + 1,
            epochs=r.epochs,
            **{k: v for k, v in point.items() if k != "epoch"},
        )
    record.update(step_summary(step_s), steps=len(step_s), train_s=train_s)
    if record["time_to_target_s"] is not None:
        # the same, had the first step cost what a steady one does
        record["time_to_target_no_compile_s"] = (
            record["time_to_target_s"] - record["first_step_excess_s"]
        )
    recipe.finish(backend, state, record)
    return state


def peak_rss_mb() -> float:
    """This process's peak resident memory, MiB, since it started.

    On Linux this is ``/proc/self/status``'s VmHWM, not ``getrusage``'s
    ``ru_maxrss``: Linux carries the parent's peak over fork and exec into the
    child's ``ru_maxrss`` (a 13 MiB worker started by a 500 MiB parent reads 500).
    Elsewhere it is ``ru_maxrss`` (bytes on macOS, KiB on the others)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def new_record(cfg: CellConfig) -> dict[str, Any]:
    """A cell's record before it runs: what it is and where."""
    spec = cfg.spec
    return {
        "run_id": cfg.run_id,
        "task": spec.name,
        "title": spec.title,
        "framework": cfg.framework,
        "mode": cfg.mode,
        "device": cfg.device,
        "status": "running",
        "error": None,
        "seed": spec.recipe.seed,
        "spec_hash": spec.spec_hash(),
        "init": cfg.init,
        "dtype": cfg.dtype,
        "threads": cfg.threads,
        "epochs": spec.recipe.epochs,
        "batch_size": spec.recipe.batch_size,
        "curve": [],
        "time_to_target_s": None,
        "epochs_to_target": None,
        "target": spec.recipe.target.model_dump() if spec.recipe.target else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run_cell(cfg: CellConfig) -> dict[str, Any]:
    """Run one cell; never raises: failures become the record's status."""
    t_start = time.perf_counter()
    spec, dtype = cfg.spec, cfg.dtype
    record = new_record(cfg)
    phases = Phases()
    try:
        with phases.phase("import_s"):
            backend = load_backend(cfg.target)
        backend.configure(Options(cfg.mode, cfg.device, cfg.threads, dtype))
        record["versions"] = backend.versions()
        record["device_name"] = backend.device_name()
        with phases.phase("data_s"):
            ds = data.load(spec.data, cfg.data_dir, strict=cfg.strict_data)
        record["data"] = ds.info
        shape = ds.sample_shape
        check_model(spec, shape)
        weights = canonical_weights(spec, shape, dtype) if record["init"] == "shared" else None
        with phases.phase("build_s"):
            state = backend.build(spec, shape, weights)
            backend.sync(state)
        record["param_count"] = backend.param_count(state)
        record["param_count_spec"] = task_param_count(spec, shape)
        if record["param_count"] != record["param_count_spec"]:
            raise RuntimeError(
                f"{cfg.framework} built {record['param_count']} parameters, the spec has "
                f"{record['param_count_spec']}: the backend does not build the spec's model"
            )
        state = train(backend, state, spec, ds, dtype, record)
        backend.sync(state)
        final = record["curve"][-1]
        record["final_train_loss"] = final["train_loss"]
        record["metrics"] = {k[5:]: v for k, v in final.items() if k.startswith("test_")}
        record["stats"] = backend.stats(state)
        if spec.recipe.report_weights:
            record["weights"] = {k: v.tolist() for k, v in backend.get_weights(state).items()}
        record["status"] = "ok"
    except BackendUnavailable as err:
        record.update(status="unavailable", error=str(err))
    except Diverged as err:
        record.update(status="diverged", error=str(err))
    except Exception as err:  # a cell's crash is its status, never the run's
        tail = "".join(traceback.format_exception(err)[-6:])
        record.update(status="failed", error=f"{type(err).__name__}: {err}\n{tail}".strip())
    record.update(phases.seconds)
    record["total_s"] = time.perf_counter() - t_start
    record["peak_rss_mb"] = peak_rss_mb()
    return record


def main() -> None:
    emit("record", record=run_cell(read_config(CellConfig)))


if __name__ == "__main__":
    main()

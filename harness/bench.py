"""``rosetta bench``: the harness measured against the limits, as ratios taken in one run.

Three benchmarks, every cell in its own process, one at a time:

* **overhead**: the harness's steady-state step time divided by the step time of a
  minimal hand-written loop (``impls/<fw>/minimal.py``: the same model, batch size
  and optimizer, the loop a user would write). Near 1 means the harness's
  framework-neutral loop costs nothing the framework would not cost anyway.
* **roofline**: the training step's FLOP/s (counted from the spec, see
  harness/flops.py) divided by the FLOP/s of a large float32 matmul timed in the
  same process with the same threads: how close a step gets to the machine's
  usable peak.
* **scaling**: step time and FLOP/s against the batch size, to show where each
  framework and mode stops being bound by per-step overhead.

Results go to ``bench.jsonl`` and ``bench.md`` (tables and a figure) in the run folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import data
from harness.backend import BACKENDS, missing_packages
from harness.data.batching import steps_per_epoch
from harness.flops import train_step_flops
from harness.runner import Cell, UsageError, run_cell_process, run_worker, thread_env
from harness.spec import TASKS_DIR, TaskSpec, load_spec, resolve_task

BENCH_TASKS = TASKS_DIR / "bench"
# the roofline's ceiling: the best of these n x n float32 matmuls in the cell's process
# (TF's 2048 runs at 110 GFLOP/s here where its 1024 runs at 146, torch's and JAX's
# at 160-170 for both)
MATMUL_SIZES = (1024, 2048)
MIN_STEPS = 200  # steady-state steps behind each median
OVERHEAD_CASES = (("mlp", 128), ("lenet", 64))
ROOFLINE_CASES = (("mlp", 256), ("mlp", 1024), ("lenet", 64), ("lenet", 256))
SCALING_BATCHES = (32, 64, 128, 256, 512, 1024)
BENCHMARKS = ("overhead", "roofline", "scaling")


@dataclass(frozen=True)
class Measure:
    """One measurement's setting."""

    task: str
    batch: int
    framework: str
    mode: str
    threads: int = 0


def bench_spec(task: str, batch: int, min_steps: int = MIN_STEPS) -> TaskSpec:
    """A task (the benchmark's own, else a built-in) at ``batch``, with enough epochs
    for ``min_steps`` steps and one evaluation, at the end."""
    path = BENCH_TASKS / f"{task}.toml"
    spec = load_spec(path) if path.is_file() else resolve_task(task)
    n = len(data.load(spec.data).x_train)
    per_epoch = steps_per_epoch(n, batch, True)
    if per_epoch == 0:
        raise ValueError(f"{task}: batch {batch} is larger than its {n} training samples")
    epochs = math.ceil(min_steps / per_epoch)
    recipe = spec.recipe.model_copy(
        update={"batch_size": batch, "epochs": epochs, "eval_every": epochs, "target": None}
    )
    return spec.model_copy(update={"recipe": recipe})


def harness_cell(m: Measure, out: Path, matmul_sizes: tuple[int, ...] = ()) -> dict[str, Any]:
    """The harness's own cell for a measurement (its record)."""
    spec = bench_spec(m.task, m.batch)
    cell = Cell(spec, m.task, m.framework, m.mode, threads=m.threads, matmul_sizes=matmul_sizes)
    return run_cell_process(cell, "bench", out / "logs" / f"{_slug(m)}-harness.log")


def minimal_loop(m: Measure, out: Path, steps: int = MIN_STEPS) -> dict[str, Any]:
    """The hand-written loop's result: ``{"step_median_s": ...}`` or ``{"error": ...}``."""
    cfg = {"model": m.task, "batch": m.batch, "steps": steps, "mode": m.mode}
    log = out / "logs" / f"{_slug(m)}-minimal.log"
    result = run_worker(
        f"impls.{m.framework}.minimal", cfg, thread_env(m.threads), 900.0, log, lambda e: None
    )
    if result.record is None:
        return {"error": f"{result.status}: {result.detail}"}
    return result.record


def _slug(m: Measure) -> str:
    return f"{m.task}-b{m.batch}-{m.framework}-{m.mode}-t{m.threads}"


def _step_s(record: dict[str, Any]) -> float | None:
    return record.get("step_median_s") if record.get("status", "ok") == "ok" else None


# hand-written loops with no harness mode of their own, compared with one that has:
# Keras' model.fit against the harness's custom tf.function step, and Flax's
# functional API under jax.jit (the form the harness's backend uses; the NNX
# tutorials' nnx.jit step is the graph mode's loop) against the harness's jit step
MINIMAL_ONLY = {"tf": {"fit": "graph"}, "jax": {"functional": "graph"}}


def overhead(
    frameworks: Iterable[str], modes: Iterable[str], threads: int, out: Path, say: Callable
) -> list[dict[str, Any]]:
    rows = []
    for task, batch in OVERHEAD_CASES:
        for fw in frameworks:
            pairs = [(mode, mode) for mode in _modes(fw, modes)]
            pairs += [(theirs, ours) for theirs, ours in MINIMAL_ONLY.get(fw, {}).items()
                      if ours in modes]  # fmt: skip
            for their_mode, mode in pairs:
                m = Measure(task, batch, fw, mode, threads)
                mine = harness_cell(m, out)
                theirs = minimal_loop(Measure(task, batch, fw, their_mode, threads), out)
                h, u = _step_s(mine), theirs.get("step_median_s")
                row = {
                    "benchmark": "overhead", **m.__dict__, "minimal_mode": their_mode,
                    "harness_ms": None if h is None else 1000 * h,
                    "minimal_ms": None if u is None else 1000 * u,
                    "ratio": None if not (h and u) else h / u,
                    "error": mine.get("error") if h is None else theirs.get("error"),
                }  # fmt: skip
                say(row)
                rows.append(row)
    return rows


def roofline(
    frameworks: Iterable[str], modes: Iterable[str], threads: int, out: Path, say: Callable
) -> list[dict[str, Any]]:
    rows = []
    for task, batch in ROOFLINE_CASES:
        spec = bench_spec(task, batch)
        flops = train_step_flops(spec, data.sample_shape(spec.data), batch)
        for fw in frameworks:
            for mode in _modes(fw, modes):
                m = Measure(task, batch, fw, mode, threads)
                record = harness_cell(m, out, matmul_sizes=MATMUL_SIZES)
                step, peak = _step_s(record), record.get("matmul_flops")
                achieved = None if not step else flops / step
                row = {
                    "benchmark": "roofline", **m.__dict__,
                    "step_ms": None if step is None else 1000 * step,
                    "step_gflop": flops / 1e9,
                    "achieved_gflops": None if achieved is None else achieved / 1e9,
                    "matmul_gflops": None if not peak else peak / 1e9,
                    "fraction": None if not (achieved and peak) else achieved / peak,
                    "peak_rss_mb": record.get("peak_rss_mb"),
                    "error": record.get("error"),
                }  # fmt: skip
                say(row)
                rows.append(row)
    return rows


def scaling(
    frameworks: Iterable[str], modes: Iterable[str], threads: int, out: Path, say: Callable
) -> list[dict[str, Any]]:
    rows = []
    for batch in SCALING_BATCHES:
        spec = bench_spec("mlp", batch)
        flops = train_step_flops(spec, data.sample_shape(spec.data), batch)
        for fw in frameworks:
            for mode in _modes(fw, modes):
                m = Measure("mlp", batch, fw, mode, threads)
                step = _step_s(harness_cell(m, out))
                row = {
                    "benchmark": "scaling", **m.__dict__,
                    "step_ms": None if step is None else 1000 * step,
                    "samples_per_s": None if not step else batch / step,
                    "achieved_gflops": None if not step else flops / step / 1e9,
                }  # fmt: skip
                say(row)
                rows.append(row)
    return rows


def _modes(framework: str, modes: Iterable[str]) -> list[str]:
    return [m for m in modes if m in BACKENDS[framework].modes]


RUNNERS = {"overhead": overhead, "roofline": roofline, "scaling": scaling}


def run_bench(
    benchmarks: Iterable[str],
    frameworks: Iterable[str],
    modes: Iterable[str],
    out: Path,
    threads: int = 0,
    say: Callable[[dict], None] = lambda row: None,
) -> list[dict[str, Any]]:
    """Run the named benchmarks; every row is appended to ``out/bench.jsonl`` as it
    is measured, so an interrupted bench keeps what it has."""
    out.mkdir(parents=True, exist_ok=True)
    installed = [f for f in frameworks if not missing_packages(BACKENDS[f])]
    rows: list[dict[str, Any]] = []

    def keep(row: dict) -> None:
        with (out / "bench.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        say(row)

    for name in benchmarks:
        RUNNERS[name](installed, modes, threads, out, keep)
    return rows


# --------------------------------------------------------------------------- stability

STABLE_WITHIN = 0.10  # two invocations' ratios may differ by this much, relative
RATIO_OF = {"overhead": "ratio", "roofline": "fraction", "scaling": "step_ms"}
KEY = ("benchmark", "task", "batch", "framework", "mode", "minimal_mode", "threads")


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """A bench folder's rows (``bench.jsonl``); the last of a measurement measured twice."""
    path = Path(folder) / "bench.jsonl"
    if not path.is_file():
        raise UsageError(
            f"{path} does not exist: --against takes a folder an earlier `rosetta bench "
            "--out DIR` wrote"
        )
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list({_key(r): r for r in rows}.values())


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in KEY)


def stability(rows: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> pd.DataFrame:
    """Each measurement's figure (the overhead ratio, the roofline fraction, the
    scaling step time) in this invocation against an earlier one's: ``change`` is
    now / before - 1, and ``stable`` whether it is within ``STABLE_WITHIN``."""
    before = {_key(r): r for r in earlier}
    out = []
    for r in rows:
        b = before.get(_key(r))
        field = RATIO_OF[r["benchmark"]]
        now, then = r.get(field), None if b is None else b.get(field)
        change = now / then - 1 if now and then else None
        out.append({
            "benchmark": r["benchmark"], "task": r["task"], "batch": r["batch"],
            "framework": r["framework"], "mode": r["mode"],
            "minimal_mode": r.get("minimal_mode"), "figure": field,
            "before": then, "now": now, "change": change,
            "stable": None if change is None else abs(change) <= STABLE_WITHIN,
        })  # fmt: skip
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- tables


def tables(rows: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """One DataFrame per benchmark, numbers rounded for reading."""
    df = pd.DataFrame(rows)
    out = {}
    for name, columns in (
        ("overhead", ["task", "batch", "framework", "mode", "minimal_mode", "harness_ms",
                      "minimal_ms", "ratio"]),
        ("roofline", ["task", "batch", "framework", "mode", "step_ms", "achieved_gflops",
                      "matmul_gflops", "fraction"]),
        ("scaling", ["batch", "framework", "mode", "step_ms", "samples_per_s", "achieved_gflops"]),
    ):  # fmt: skip
        part = df[df["benchmark"] == name] if not df.empty else df
        if not part.empty:
            out[name] = part[columns].round(3).reset_index(drop=True)
    return out


def write_markdown(
    rows: list[dict[str, Any]], out: Path, command: str, stable: pd.DataFrame | None = None
) -> Path:
    from harness.report.plots import png, scaling_figure
    from harness.report.render import markdown_table

    parts = ["# Rosetta bench", "", f"`{command}`", ""]
    notes = {
        "overhead": "ratio: the harness's median step over the minimal loop's (same model, "
        "batch, optimizer and threads, each in its own process); 1.0 means no overhead. "
        "minimal_mode fit: Keras' model.fit, against the harness's own tf.function step; "
        "functional: Flax's functional API under jax.jit (nnx.split once, nnx.merge in the "
        "step), against the harness's jit step, where graph is the NNX tutorials' nnx.jit.",
        "roofline": "fraction: the step's FLOP/s (matrix products counted from the spec: "
        "3x forward, 2x for a layer no trainable layer precedes) over the best float32 "
        "matmul's of sizes "
        + " and ".join(f"{n}x{n}" for n in MATMUL_SIZES)
        + ", timed in the same process.",
        "scaling": "the MLP's step time and throughput as the batch grows.",
    }
    for name, df in tables(rows).items():
        parts += [f"## {name}", "", markdown_table(df), "", notes[name], ""]
    scaling_rows = [r for r in rows if r["benchmark"] == "scaling"]
    if scaling_rows:
        fig = scaling_figure(pd.DataFrame(scaling_rows))
        (out / "scaling.png").write_bytes(png(fig))
        parts += ["![scaling](scaling.png)", ""]
    if stable is not None and not stable.empty:
        shown = stable.drop(columns="minimal_mode" if stable["minimal_mode"].isna().all() else [])
        parts += [
            "## stability", "", markdown_table(shown.round(4)), "",
            f"Each figure against the same measurement's in an earlier invocation (--against): "
            f"change is now / before - 1; stable when within {STABLE_WITHIN:.0%}. "
            f"{int(stable['stable'].fillna(False).sum())} of {len(stable)} are stable.", "",
        ]  # fmt: skip
    path = out / "bench.md"
    path.write_text("\n".join(parts))
    return path

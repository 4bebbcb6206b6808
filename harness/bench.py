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

With ``rounds`` above one every measurement is taken that many times, each in a fresh
process, and its figure is the median over the rounds. The overhead's two loops run in
alternating order (harness then minimal, then minimal then harness, ...), and each
round's ratio is taken from its own adjacent pair: this machine's speed drifts by tens of
percent over minutes, and a ratio of two processes far apart in time measures the drift.

Results go to ``bench.jsonl`` and ``bench.md`` (tables and a figure) in the run folder.
"""

from __future__ import annotations

import json
import math
import statistics
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


def harness_cell(
    m: Measure, out: Path, matmul_sizes: tuple[int, ...] = (), round_: int = 0
) -> dict[str, Any]:
    """The harness's own cell for a measurement (its record)."""
    spec = bench_spec(m.task, m.batch)
    cell = Cell(spec, m.task, m.framework, m.mode, threads=m.threads, matmul_sizes=matmul_sizes)
    return run_cell_process(cell, "bench", out / "logs" / f"{_slug(m)}-r{round_}-harness.log")


def minimal_loop(m: Measure, out: Path, steps: int = MIN_STEPS, round_: int = 0) -> dict[str, Any]:
    """The hand-written loop's result: ``{"step_median_s": ...}`` or ``{"error": ...}``."""
    cfg = {"model": m.task, "batch": m.batch, "steps": steps, "mode": m.mode}
    log = out / "logs" / f"{_slug(m)}-r{round_}-minimal.log"
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


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: list[float]) -> float | None:
    """(max - min) / median over the rounds: how far apart the rounds fell."""
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else None


def _error(records: Iterable[dict[str, Any]]) -> str | None:
    return next((r["error"] for r in records if r.get("error")), None)


# hand-written loops with no harness mode of their own, compared with one that has:
# Keras' model.fit against the harness's custom tf.function step, and Flax's
# functional API under jax.jit (the form the harness's backend uses; the NNX
# tutorials' nnx.jit step is the graph mode's loop) against the harness's jit step
MINIMAL_ONLY = {"tf": {"fit": "graph"}, "jax": {"functional": "graph"}}


def overhead(
    frameworks: Iterable[str],
    modes: Iterable[str],
    threads: int,
    out: Path,
    say: Callable,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    rows = []
    for task, batch in OVERHEAD_CASES:
        for fw in frameworks:
            pairs = [(mode, mode) for mode in _modes(fw, modes)]
            pairs += [(theirs, ours) for theirs, ours in MINIMAL_ONLY.get(fw, {}).items()
                      if ours in modes]  # fmt: skip
            for their_mode, mode in pairs:
                m = Measure(task, batch, fw, mode, threads)
                yours = Measure(task, batch, fw, their_mode, threads)
                mine, theirs = [], []
                for r in range(rounds):
                    # alternate which loop runs first, so that a drift in the machine's
                    # speed falls on both loops alike over the rounds
                    if r % 2:
                        theirs.append(minimal_loop(yours, out, round_=r))
                    mine.append(harness_cell(m, out, round_=r))
                    if not r % 2:
                        theirs.append(minimal_loop(yours, out, round_=r))
                h = [_step_s(x) for x in mine]
                u = [x.get("step_median_s") for x in theirs]
                ratios = [a / b for a, b in zip(h, u, strict=True) if a and b]
                row = {
                    "benchmark": "overhead", **m.__dict__, "minimal_mode": their_mode,
                    "harness_ms": _ms(_median([a for a in h if a])),
                    "minimal_ms": _ms(_median([b for b in u if b])),
                    "ratio": _median(ratios), "rounds": len(ratios), "ratios": ratios,
                    "spread": _spread(ratios), "error": _error(mine) or _error(theirs),
                    "harness_ms_rounds": [_ms(a) for a in h],
                    "minimal_ms_rounds": [_ms(b) for b in u],
                }  # fmt: skip
                say(row)
                rows.append(row)
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def roofline(
    frameworks: Iterable[str],
    modes: Iterable[str],
    threads: int,
    out: Path,
    say: Callable,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    rows = []
    for task, batch in ROOFLINE_CASES:
        spec = bench_spec(task, batch)
        flops = train_step_flops(spec, data.sample_shape(spec.data), batch)
        for fw in frameworks:
            for mode in _modes(fw, modes):
                m = Measure(task, batch, fw, mode, threads)
                records = [harness_cell(m, out, MATMUL_SIZES, round_=r) for r in range(rounds)]
                ok = [x for x in records if _step_s(x) and x.get("matmul_flops")]
                # each round's fraction is its own process's step against its own matmul
                fractions = [flops / _step_s(x) / x["matmul_flops"] for x in ok]
                step = _median([_step_s(x) for x in ok])
                peak = _median([x["matmul_flops"] for x in ok])
                row = {
                    "benchmark": "roofline", **m.__dict__,
                    "step_ms": _ms(step),
                    "step_gflop": flops / 1e9,
                    "achieved_gflops": None if not step else flops / step / 1e9,
                    "matmul_gflops": None if not peak else peak / 1e9,
                    "fraction": _median(fractions), "rounds": len(fractions),
                    "fractions": fractions, "spread": _spread(fractions),
                    "step_ms_rounds": [_ms(_step_s(x)) for x in records],
                    "matmul_gflops_rounds": [x.get("matmul_flops", 0) / 1e9 for x in records],
                    "peak_rss_mb": _median([x["peak_rss_mb"] for x in records
                                            if x.get("peak_rss_mb")]),
                    "error": _error(records),
                }  # fmt: skip
                say(row)
                rows.append(row)
    return rows


def scaling(
    frameworks: Iterable[str],
    modes: Iterable[str],
    threads: int,
    out: Path,
    say: Callable,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    rows = []
    for batch in SCALING_BATCHES:
        spec = bench_spec("mlp", batch)
        flops = train_step_flops(spec, data.sample_shape(spec.data), batch)
        for fw in frameworks:
            for mode in _modes(fw, modes):
                m = Measure("mlp", batch, fw, mode, threads)
                records = [harness_cell(m, out, round_=r) for r in range(rounds)]
                steps = [s for s in map(_step_s, records) if s]
                step = _median(steps)
                row = {
                    "benchmark": "scaling", **m.__dict__,
                    "step_ms": _ms(step),
                    "samples_per_s": None if not step else batch / step,
                    "achieved_gflops": None if not step else flops / step / 1e9,
                    "rounds": len(steps), "spread": _spread(steps), "error": _error(records),
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
    rounds: int = 1,
) -> list[dict[str, Any]]:
    """Run the named benchmarks, each measurement ``rounds`` times; every row is
    appended to ``out/bench.jsonl`` as it is measured, so an interrupted bench keeps
    what it has."""
    if rounds < 1:
        raise UsageError(f"--rounds must be 1 or more, not {rounds}")
    out.mkdir(parents=True, exist_ok=True)
    installed = [f for f in frameworks if not missing_packages(BACKENDS[f])]
    rows: list[dict[str, Any]] = []

    def keep(row: dict) -> None:
        with (out / "bench.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        say(row)

    for name in benchmarks:
        RUNNERS[name](installed, modes, threads, out, keep, rounds)
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
                      "minimal_ms", "ratio", "spread"]),
        ("roofline", ["task", "batch", "framework", "mode", "step_ms", "achieved_gflops",
                      "matmul_gflops", "fraction", "spread"]),
        ("scaling", ["batch", "framework", "mode", "step_ms", "samples_per_s", "achieved_gflops",
                     "spread"]),
    ):  # fmt: skip
        part = df[df["benchmark"] == name] if not df.empty else df
        if not part.empty:
            shown = [
                c for c in columns if c in part and not (c == "spread" and part[c].isna().all())
            ]
            out[name] = part[shown].round(3).reset_index(drop=True)
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
    rounds = max((r.get("rounds") or 1 for r in rows), default=1)
    if rounds > 1:
        parts += [
            f"Each figure is the median of {rounds} rounds, each round in fresh processes "
            "(the overhead's two loops in alternating order, each round's ratio from its own "
            "pair); spread is (max - min) / median over the rounds.", "",
        ]  # fmt: skip
    for name, df in tables(rows).items():
        parts += [f"## {name}", "", markdown_table(df), "", notes[name], ""]
    scaling_rows = [r for r in rows if r["benchmark"] == "scaling"]
    if scaling_rows:
        fig = scaling_figure(pd.DataFrame(scaling_rows))
        (out / "scaling.png").write_bytes(png(fig))
        parts += ["![scaling](scaling.png)", ""]
    if stable is not None and not stable.empty:
        shown = stable.drop(columns="minimal_mode" if stable["minimal_mode"].isna().all() else [])
        shown = (
            shown.assign(minimal_mode=shown["minimal_mode"].fillna(""))
            if "minimal_mode" in shown
            else shown
        )
        parts += [
            "## stability", "", markdown_table(shown.round(4)), "",
            f"Each figure against the same measurement's in an earlier invocation (--against): "
            f"change is now / before - 1; stable when within {STABLE_WITHIN:.0%}. "
            f"{int(stable['stable'].fillna(False).sum())} of {len(stable)} are stable.", "",
        ]  # fmt: skip
    path = out / "bench.md"
    path.write_text("\n".join(parts))
    return path

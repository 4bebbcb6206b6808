"""``rosetta bench``: the harness measured against the limits, as ratios taken in one run.

Three benchmarks, each measurement in its own process (``harness.paired``), one
process at a time:

* **overhead**: the harness's steady-state step time divided by the step time of a
  minimal hand-written loop (``impls/<fw>/minimal.py``: the same model, batch size
  and optimizer, the loop a user would write). Near 1 means the harness's
  framework-neutral loop costs nothing the framework would not cost anyway.
* **roofline**: the training step's FLOP/s (counted from the spec, see
  harness/flops.py) divided by the FLOP/s of a large float32 matmul timed in the
  same process with the same threads: how close a step gets to the machine's
  usable peak, the best step against the best matmul (``_best_fraction``).
* **scaling**: step time, FLOP/s and the roofline's fraction against the batch
  size, to show where each framework and mode stops being bound by per-step
  overhead: ``half_ceiling`` names the batch from which its step reaches half of
  its matmul's FLOP/s.

The roofline's and the scaling's rows of one measurement (the MLP at 256 to 1024)
come from the same processes (``shared``).

What is compared runs in turns in one process, blocks of steps alternating with
each other (and with the matmul), and each overhead ratio is a median over block pairs: this
machine's speed drifts by tens of percent over seconds and minutes, and two
processes timed one after the other measure that drift as much as the loops. With
``rounds`` above one every measurement is taken in that many processes, a pass
over all the measurements per round (so that a slow stretch of minutes meets one
round of each, not all of one's), and its figure is the median over them, with
their spread (the roofline's and scaling's: the fastest turn over them all, see
``_best_fraction``). A measurement whose rounds leave that median uncertain
(``SETTLED_WITHIN``) takes further rounds, in passes over the unsettled ones, up
to ``max_rounds``: the processes of one measurement can fall into two speeds (a
LeNet step 10 or 15 ms, for a whole process), and the median of a few such
processes lands on either.

Results go to ``bench.jsonl`` and ``bench.md`` (tables and a figure) in the run folder.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import data, validate
from harness.backend import BACKENDS, missing_packages
from harness.data.batching import steps_per_epoch
from harness.flops import train_step_flops
from harness.paired import PairedConfig
from harness.runner import thread_env
from harness.spec import TASKS_DIR, TaskSpec, load_spec, resolve_task
from harness.validate import UsageError
from harness.worker import run_worker

BENCH_TASKS = TASKS_DIR / "bench"
# the roofline's ceiling: the best of these n x n float32 matmuls in the bench process
# (which size is the faster differs by framework and machine: the rows keep each size's
# figure, matmul_gflops_by_n)
MATMUL_SIZES = (1024, 2048)
BLOCKS = 8  # turns each loop takes in one bench process
BLOCK_STEPS = 25  # steps per turn: 200 timed steps per loop and process
OVERHEAD_CASES = (("mlp", 128), ("lenet", 64))
# the MLP at three batches from 256 up, LeNet at its training batch and a large one
ROOFLINE_CASES = (("mlp", 256), ("mlp", 512), ("mlp", 1024), ("lenet", 64), ("lenet", 256))
SCALING_BATCHES = (32, 64, 128, 256, 512, 1024)
BENCHMARKS = ("overhead", "roofline", "scaling")
TASKS = ("mlp", "lenet")  # what the benchmarks measure (scaling: the MLP only)
# a measurement takes another round while the standard error of its figure's median
# over its rounds is more than this, relative to the median (and it has had fewer
# than max_rounds): two invocations' medians then rarely differ by the 10% a ratio
# is allowed to move (STABLE_WITHIN)
SETTLED_WITHIN = 0.03
# the processes every measurement takes before settling may stop it: the fastest turn
# of three processes that all ran at the slower speed settled there (TF's xla step at
# b512: 0.566 from three processes, 0.669 from seven in the same invocation)
ROUNDS = 5
MAX_ROUNDS = 7


@dataclass(frozen=True)
class Measure:
    """One measurement's setting."""

    task: str
    batch: int
    framework: str
    mode: str
    threads: int = 0


def bench_spec(task: str, batch: int) -> TaskSpec:
    """A task (the benchmark's own, else a built-in) at ``batch``, with no target (the
    bench process steps through its epochs for as long as it times)."""
    path = BENCH_TASKS / f"{task}.toml"
    spec = load_spec(path) if path.is_file() else resolve_task(task)
    n = len(data.load(spec.data).x_train)
    if steps_per_epoch(n, batch, True) == 0:
        raise ValueError(f"{task}: batch {batch} is larger than its {n} training samples")
    recipe = spec.recipe.model_copy(update={"batch_size": batch, "target": None})
    return spec.model_copy(update={"recipe": recipe})


def paired(
    m: Measure,
    out: Path,
    minimal_mode: str | None = None,
    matmul_sizes: tuple[int, ...] = (),
    round_: int = 0,
    blocks: int = BLOCKS,
    block: int = BLOCK_STEPS,
    benchmark: str = "bench",
) -> dict[str, Any]:
    """One bench process (``harness.paired``): the harness's step, in turns with the
    minimal loop's in ``minimal_mode`` and with the matmuls when asked; its result, or
    ``{"error": ...}``. Its log is named after ``benchmark`` and the measurement."""
    info = BACKENDS[m.framework]
    missing = missing_packages(info)
    if missing:
        return {"error": f"{m.framework} is not installed (missing: {', '.join(missing)})"}
    cfg = PairedConfig(
        spec=bench_spec(m.task, m.batch), source=m.task, framework=m.framework,
        target=info.target, mode=m.mode, threads=m.threads, blocks=blocks, block=block,
        matmul_sizes=tuple(matmul_sizes),
        minimal=None if minimal_mode is None
        else {"model": m.task, "batch": m.batch, "mode": minimal_mode},
        minimal_module=f"impls.{m.framework}.minimal",
    )  # fmt: skip
    log = out / "logs" / f"{benchmark}-{_slug(m)}-{minimal_mode or 'alone'}-r{round_}.log"
    result = run_worker("harness.paired", cfg, thread_env(m.threads), 900.0, log, lambda e: None)
    if result.record is None:
        return {"error": f"{result.status}: {result.detail}"}
    return result.record


def _slug(m: Measure) -> str:
    return f"{m.task}-b{m.batch}-{m.framework}-{m.mode}-t{m.threads}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: list[float]) -> float | None:
    """(max - min) / median over the rounds: how far apart the rounds fell."""
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else None


def _uncertainty(values: list[float]) -> float | None:
    """The standard error of the median of ``values``, relative to it: 1.25 s / sqrt(n)
    (s the standard deviation over the rounds), as for values spread about normally."""
    if len(values) < 2 or not statistics.median(values):
        return None
    sd = statistics.stdev(values)
    return math.sqrt(math.pi / 2) * sd / math.sqrt(len(values)) / abs(statistics.median(values))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _error(results: Iterable[dict[str, Any]]) -> str | None:
    return next((r["error"] for r in results if r.get("error")), None)


def _ok(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if not r.get("error")]


def _each_turn(ok: list[dict[str, Any]], figure: Callable, *keys: str) -> list[list[float]]:
    """Each round's turns' ``figure`` of the values under ``keys`` (timed seconds apart
    in one process, so a drift slower than a turn cancels)."""
    return [[figure(*turn) for turn in zip(*(r[k] for k in keys), strict=True)] for r in ok]


def _per_round(ok: list[dict[str, Any]], figure: Callable, *keys: str) -> list[float]:
    """Each round's figure: the median over its turns (``_each_turn``)."""
    return [_median(turns) for turns in _each_turn(ok, figure, *keys)]


def _best_fraction(flops: float, steps: list[float], matmuls: list[float]) -> float | None:
    """The roofline's figure: the step's FLOP/s at its fastest turn over the matmul's
    at its fastest reading, both timed in the same processes. The host's other tenants
    only ever slow a turn: a step runs at one of two speeds that switch within seconds
    (LeNet's TF graph step 3.2 or 5 ms, turn by turn in one process), a memory-bound
    step slowed more than the compute-bound matmul, and how many turns fall on the
    slower speed changes from one invocation to the next, where the fastest turn of
    each changes far less. A quantile or median over turns lands on either speed."""
    return flops / min(steps) / max(matmuls) if steps and matmuls else None


def _around(readings: list[float]) -> list[float]:
    """Each turn's matmul ceiling: the mean of the readings timed just before and just
    after it (the worker takes one more reading than turns)."""
    return [(a + b) / 2 for a, b in itertools.pairwise(readings)]


def _turns(ok: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Every round's per-turn figures as the worker gave them (seconds, FLOP/s), kept
    in the row so that a moved ratio can be traced to the turns that moved it."""
    return [{k: r[k] for k in keys if k in r} for r in ok]


# hand-written loops with no harness mode of their own, compared with one that has:
# Keras' model.fit against the harness's custom tf.function step, and Flax's
# functional API under jax.jit (the form the harness's backend uses; the NNX
# tutorials' nnx.jit step is the graph mode's loop) against the harness's jit step
MINIMAL_ONLY = {"tf": {"fit": "graph"}, "jax": {"functional": "graph"}}


@dataclass(frozen=True)
class Job:
    """One row of a benchmark: the measurement, and the minimal loop its step is
    compared with (the overhead's)."""

    benchmark: str
    m: Measure
    minimal_mode: str | None = None

    @property
    def process(self) -> tuple:
        """What its bench process times: rows with the same one share their processes."""
        sizes = () if self.benchmark == "overhead" else MATMUL_SIZES
        return self.m, self.minimal_mode, sizes

    def row(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        return ROWS[self.benchmark](self, results)

    def __str__(self) -> str:
        m, versus = self.m, f" vs {self.minimal_mode}" if self.minimal_mode else ""
        return f"{self.benchmark} {m.task} b{m.batch} {m.framework} {m.mode}{versus}"


def shared(jobs: list[Job]) -> list[list[int]]:
    """The jobs' indices grouped by what their processes time, in the order each
    group first appears: the roofline and the scaling both time the MLP at batches 256
    to 1024 against the matmul, one process for both rows, so that one invocation
    reports one figure for one measurement (taken apart, two figures of TF's xla
    step at b512 in one invocation were 0.566 and 0.669)."""
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.process, []).append(i)
    return list(groups.values())


def _benchmarks(jobs: list[Job]) -> str:
    return "+".join(dict.fromkeys(job.benchmark for job in jobs))


def take(jobs: list[Job], out: Path, round_: int) -> dict[str, Any]:
    """One bench process for ``jobs``, which time the same (``Job.process``); its log
    is named after their benchmarks."""
    m, minimal_mode, sizes = jobs[0].process
    return paired(m, out, minimal_mode, sizes, round_, benchmark=_benchmarks(jobs))


def _label(jobs: list[Job]) -> str:
    """The jobs of one process, for the progress bar: their benchmarks, then the rest."""
    return _benchmarks(jobs) + str(jobs[0])[len(jobs[0].benchmark) :]


def overhead(frameworks: Iterable[str], modes: Iterable[str], threads: int) -> list[Job]:
    """Each case's step in each mode against the minimal loop in that mode, and the
    loops with no harness mode of their own (``MINIMAL_ONLY``) against theirs."""
    jobs = []
    for task, batch in OVERHEAD_CASES:
        for fw in frameworks:
            pairs = [(mode, mode) for mode in _modes(fw, modes)]
            pairs += [(theirs, ours) for theirs, ours in MINIMAL_ONLY.get(fw, {}).items()
                      if ours in modes]  # fmt: skip
            jobs += [Job("overhead", Measure(task, batch, fw, mode, threads), their_mode)
                     for their_mode, mode in pairs]  # fmt: skip
    return jobs


def roofline(frameworks: Iterable[str], modes: Iterable[str], threads: int) -> list[Job]:
    """Each roofline case in each framework and mode, against its matmul."""
    return [Job("roofline", Measure(task, batch, fw, mode, threads))
            for task, batch in ROOFLINE_CASES for fw in frameworks
            for mode in _modes(fw, modes)]  # fmt: skip


def scaling(frameworks: Iterable[str], modes: Iterable[str], threads: int) -> list[Job]:
    """The MLP at each scaling batch in each framework and mode, against its matmul."""
    return [Job("scaling", Measure("mlp", batch, fw, mode, threads))
            for batch in SCALING_BATCHES for fw in frameworks
            for mode in _modes(fw, modes)]  # fmt: skip


def overhead_row(job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = _ok(results)
    ratios = _per_round(ok, lambda h, u: h / u, "harness_block_s", "minimal_block_s")
    h = [_median(r["harness_block_s"]) for r in ok]
    u = [_median(r["minimal_block_s"]) for r in ok]
    return {
        "benchmark": "overhead", **job.m.__dict__, "minimal_mode": job.minimal_mode,
        "harness_ms": _ms(_median(h)), "minimal_ms": _ms(_median(u)),
        "ratio": _median(ratios), "rounds": len(ratios), "ratios": ratios,
        "spread": _spread(ratios), "uncertainty": _uncertainty(ratios),
        "error": _error(results),
        "harness_ms_rounds": [_ms(x) for x in h],
        "minimal_ms_rounds": [_ms(x) for x in u],
        "turns": _turns(ok, "harness_block_s", "minimal_block_s"),
    }  # fmt: skip


def roofline_row(job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"benchmark": "roofline", **_against_ceiling(job.m, results)}


def scaling_row(job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    row = _against_ceiling(job.m, results)
    step = row["best_step_ms"]
    return {
        "benchmark": "scaling", **row,
        "samples_per_s": None if not step else 1000 * job.m.batch / step,
        # of its figure, the step time at its fastest turn
        "spread": _spread(row["best_step_ms_rounds"]),
        "uncertainty": _uncertainty(row["best_step_ms_rounds"]),
    }  # fmt: skip


def _against_ceiling(m: Measure, results: list[dict[str, Any]]) -> dict[str, Any]:
    """A measurement's step against the matmul timed around its turns, over its
    rounds' processes: the figures a roofline and a scaling row share."""
    spec = bench_spec(m.task, m.batch)
    flops = train_step_flops(spec, data.sample_shape(spec.data), m.batch)
    ok = [{**r, "ceiling": _around(r["matmul_flops"])} for r in _ok(results)]
    turns = _each_turn(ok, lambda s, p: flops / s / p, "harness_block_s", "ceiling")
    fractions = [_best_fraction(flops, r["harness_block_s"], r["matmul_flops"]) for r in ok]
    every_step = [s for r in ok for s in r["harness_block_s"]]
    every_matmul = [p for r in ok for p in r["matmul_flops"]]
    best_step = min(every_step, default=None)
    best_matmul = max(every_matmul, default=None)
    steps = [_median(r["harness_block_s"]) for r in ok]
    peaks = [_median(r["matmul_flops"]) for r in ok]
    by_n = {n: _median([_median(r["matmul_flops_by_n"][n]) for r in ok])
            for n in (ok[0].get("matmul_flops_by_n", {}) if ok else {})}  # fmt: skip
    reads = [_median(r["read_gbps"]) for r in ok if r.get("read_gbps")]
    step, peak = _median(steps), _median(peaks)
    return {
        **m.__dict__,
        "step_ms": _ms(step),
        "step_gflop": flops / 1e9,
        # the figure's parts: the fastest turn and matmul reading over every round
        "best_step_ms": _ms(best_step),
        "achieved_gflops": None if not best_step else flops / best_step / 1e9,
        "best_matmul_gflops": None if not best_matmul else best_matmul / 1e9,
        "matmul_gflops": None if not peak else peak / 1e9,
        "fraction": _best_fraction(flops, every_step, every_matmul),
        # every turn's fraction against the matmuls around it, their median
        "fraction_median": _median([f for t in turns for f in t]),
        "rounds": len(fractions), "fractions": fractions, "spread": _spread(fractions),
        "uncertainty": _uncertainty(fractions),
        "step_ms_rounds": [_ms(x) for x in steps],
        "best_step_ms_rounds": [_ms(min(r["harness_block_s"])) for r in ok],
        "matmul_gflops_rounds": [x / 1e9 for x in peaks],
        # which size sets the ceiling: each size's median over readings and rounds
        "matmul_gflops_by_n": {n: x / 1e9 for n, x in by_n.items()},
        # the host's memory speed, read with each matmul: a fraction that moved while
        # the matmul held may have moved with it
        "read_gbps": _median(reads), "read_gbps_rounds": reads,
        "turns": _turns(ok, "harness_block_s", "matmul_flops_by_n", "read_gbps"),
        "peak_rss_mb": _median([r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb")]),
        "error": _error(results),
    }  # fmt: skip


def _modes(framework: str, modes: Iterable[str]) -> list[str]:
    return [m for m in modes if m in BACKENDS[framework].modes]


JOBS = {"overhead": overhead, "roofline": roofline, "scaling": scaling}
ROWS = {"overhead": overhead_row, "roofline": roofline_row, "scaling": scaling_row}


def validate_bench(benchmarks, frameworks, modes, rounds: int, tasks, jobs: int = 1) -> None:
    """A bench's options checked before anything runs (UsageError naming the bad one)."""
    validate.one_of("benchmark", benchmarks, BENCHMARKS)
    validate.frameworks(frameworks)
    validate.modes(modes)
    validate.at_least("--rounds", rounds)
    validate.one_of("bench task", tasks, TASKS)
    if jobs != 1:
        raise UsageError(
            f"--jobs {jobs}: the bench runs one process at a time (--jobs 1), since "
            "its ratios need the whole machine for each process"
        )


def run_bench(
    benchmarks: Iterable[str],
    frameworks: Iterable[str],
    modes: Iterable[str],
    out: Path,
    threads: int = 0,
    say: Callable[[dict], None] = lambda row: None,
    rounds: int = 1,
    progress: bool = False,
    max_rounds: int = MAX_ROUNDS,
    tasks: Iterable[str] = TASKS,
) -> list[dict[str, Any]]:
    """Run the named benchmarks of ``tasks``, each measurement in ``rounds`` processes,
    and in more, up to ``max_rounds``, while its median is unsettled. Rows that time
    the same (``shared``) take the same processes, and take more while any of them is
    unsettled.

    The rounds are passes over every measurement, one after the other, so that one
    measurement's processes lie a pass apart: a stretch of minutes in which the
    machine runs slower falls on one round of the measurements it meets, and their
    median leaves it out, where a measurement's rounds taken back to back would all
    fall in it. After ``rounds`` passes, further passes go over the measurements
    whose median is still uncertain by more than ``SETTLED_WITHIN``. Each row is
    appended to ``out/bench.jsonl`` (and given to ``say``) once its measurement is
    done; an interrupted bench keeps the rows of what its rounds measured so far."""
    from tqdm.auto import tqdm

    tasks = list(tasks)
    validate_bench(benchmarks, frameworks, modes, rounds, tasks)
    max_rounds = max(rounds, max_rounds)
    out.mkdir(parents=True, exist_ok=True)
    installed = [f for f in frameworks if not missing_packages(BACKENDS[f])]
    every = [job for name in benchmarks for job in JOBS[name](installed, modes, threads)]
    jobs = [job for job in every if job.m.task in tasks]
    if every and not jobs:
        names = ", ".join(sorted({job.benchmark for job in every}))
        raise UsageError(
            f"{names} measures nothing of {', '.join(tasks)} (scaling: the MLP only); "
            "choose other --tasks or benchmarks"
        )
    groups = shared(jobs)
    taken: list[list[dict[str, Any]]] = [[] for _ in groups]  # each group's processes
    kept: dict[int, dict[str, Any]] = {}  # each job's row, once done

    def keep(i: int, row: dict) -> None:
        kept[i] = row
        with (out / "bench.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        with tqdm.external_write_mode():
            say(row)

    bar = tqdm(total=rounds * len(groups), disable=not progress, unit="process",
               dynamic_ncols=True)  # fmt: skip
    todo = list(range(len(groups)))
    try:
        while todo:
            unsettled = []
            for g in todo:
                members, results = [jobs[i] for i in groups[g]], taken[g]
                n = len(results)
                bar.set_description(
                    f"round {n + 1}{'' if n < rounds else ' (settling)'}: {_label(members)}"
                )
                results.append(take(members, out, n))
                bar.update()
                if n + 1 < rounds:
                    unsettled.append(g)
                    continue
                rows = {i: jobs[i].row(results) for i in groups[g]}
                if n + 1 < max_rounds and any(
                    (row.get("uncertainty") or 0) > SETTLED_WITHIN for row in rows.values()
                ):
                    unsettled.append(g)
                else:
                    for i, row in rows.items():
                        keep(i, row)
            if len(taken[todo[0]]) >= rounds:  # the passes from here on: one each
                bar.total += len(unsettled)
                bar.refresh()
            todo = unsettled
    except KeyboardInterrupt:
        for g in todo:
            for i in groups[g]:
                if taken[g] and i not in kept:
                    keep(i, jobs[i].row(taken[g]))
        raise
    finally:
        bar.close()
    return [kept[i] for i in sorted(kept)]  # in the order of the jobs, not of settling


# --------------------------------------------------------------------------- stability

STABLE_WITHIN = 0.10  # two invocations' ratios may differ by this much, relative
RATIO_OF = {"overhead": "ratio", "roofline": "fraction", "scaling": "best_step_ms"}
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


# what a roofline or scaling figure is made of, each compared with its value before
# too: a fraction that moved with its step while the matmul held, and with the
# memory reading, moved with the host's memory speed
PARTS = {
    "step_change": "best_step_ms",
    "matmul_change": "best_matmul_gflops",
    "read_change": "read_gbps",
}


def _change(now: float | None, then: float | None) -> float | None:
    return now / then - 1 if now and then else None


def stability(rows: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> pd.DataFrame:
    """Each measurement's figure (the overhead ratio, the roofline fraction, the
    scaling step time at its fastest turn) in this invocation against an earlier
    one's: ``change`` is now / before - 1, and ``stable`` whether it is within
    ``STABLE_WITHIN``; for the roofline's and scaling's, the change of its best step,
    best matmul and memory reading (``PARTS``) as well."""

    before = {_key(r): r for r in earlier}
    out = []
    for r in rows:
        b = before.get(_key(r)) or {}
        field = RATIO_OF[r["benchmark"]]
        now, then = r.get(field), b.get(field)
        change = _change(now, then)
        # (a scaling figure is its best step: its step_change would repeat change)
        parts = {} if r["benchmark"] == "overhead" else {
            name: None if key == field else _change(r.get(key), b.get(key))
            for name, key in PARTS.items()
        }  # fmt: skip
        out.append({
            "benchmark": r["benchmark"], "task": r["task"], "batch": r["batch"],
            "framework": r["framework"], "mode": r["mode"],
            "minimal_mode": r.get("minimal_mode") or "", "figure": field,
            "before": then, "now": now, "change": change,
            "stable": None if change is None else abs(change) <= STABLE_WITHIN, **parts,
        })  # fmt: skip
    return pd.DataFrame(out)


def held(stable: pd.DataFrame) -> str:
    """How many of the figures compared held, in words."""
    compared = stable["stable"].notna()
    line = (f"{int(stable['stable'][compared].astype(bool).sum())} of {int(compared.sum())} "
            f"compared held within {STABLE_WITHIN:.0%}")  # fmt: skip
    missing = len(stable) - int(compared.sum())
    return line + (f" ({missing} with no figure before or now)" if missing else "")


# --------------------------------------------------------------------------- tables

HALF = 0.5  # a step at half its own matmul's FLOP/s or more counts as compute-bound


def half_ceiling(rows: list[dict[str, Any]], benchmark: str) -> pd.DataFrame:
    """Where each framework and mode becomes compute-bound on the MLP, in one
    benchmark's rows (the roofline's or the scaling's): the smallest batch measured
    from which every larger batch's step also reaches ``HALF`` of its matmul ceiling
    (missing where the largest batch's does not), and the best fraction measured."""

    mlp = [r for r in rows if r["benchmark"] == benchmark and r["task"] == "mlp"
           and r.get("fraction") is not None]  # fmt: skip
    if not mlp:
        return pd.DataFrame()
    out = []
    for (fw, mode), part in pd.DataFrame(mlp).groupby(["framework", "mode"], sort=False):
        part = part.sort_values("batch")
        below = part["batch"][part["fraction"] < HALF]
        reached = part["batch"][part["batch"] > below.max()] if len(below) else part["batch"]
        best = part.loc[part["fraction"].idxmax()]
        out.append({
            "framework": fw, "mode": mode,
            "half_from_batch": reached.min() if len(reached) else None,
            "batches": f"{part['batch'].min()}-{part['batch'].max()}",
            "best_fraction": best["fraction"], "at_batch": best["batch"],
        })  # fmt: skip
    return pd.DataFrame(out).astype({"half_from_batch": "Int64", "at_batch": "Int64"})


def tables(rows: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """One DataFrame per benchmark, numbers rounded for reading."""

    df = pd.DataFrame(rows)
    out = {}
    for name, columns in (
        ("overhead", ["task", "batch", "framework", "mode", "minimal_mode", "harness_ms",
                      "minimal_ms", "ratio", "spread", "rounds"]),
        ("roofline", ["task", "batch", "framework", "mode", "step_ms", "best_step_ms",
                      "achieved_gflops", "best_matmul_gflops", "fraction", "fraction_median",
                      "spread", "rounds", "read_gbps"]),
        ("scaling", ["batch", "framework", "mode", "best_step_ms", "samples_per_s", "step_ms",
                     "achieved_gflops", "best_matmul_gflops", "fraction", "spread", "rounds",
                     "read_gbps"]),
    ):  # fmt: skip
        part = df[df["benchmark"] == name] if not df.empty else df
        if not part.empty:
            shown = [c for c in columns if c in part and not (
                (c == "spread" and part[c].isna().all()) or (c == "rounds" and (part[c] == 1).all())
            )]  # fmt: skip
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
        "batch, optimizer and threads), the two taking turns of "
        f"{BLOCK_STEPS} steps in one process, {BLOCKS} turns each: the median over the "
        "turn pairs of each pair's ratio; 1.0 means no overhead. "
        "minimal_mode fit: Keras' model.fit, against the harness's own tf.function step; "
        "functional: Flax's functional API under jax.jit (nnx.split once, nnx.merge in the "
        "step), against the harness's jit step, where graph is the NNX tutorials' nnx.jit.",
        "roofline": "fraction: the step's FLOP/s (matrix products counted from the spec: "
        "3x forward, 2x for a layer no trainable layer precedes) over the best float32 "
        "matmul's of sizes "
        + " and ".join(f"{n}x{n}" for n in MATMUL_SIZES)
        + ", timed in the same process before the first turn of steps and after each, "
        "the step at its fastest turn (best_step_ms, achieved_gflops) over the matmul at "
        "its fastest reading (best_matmul_gflops), over every round: the host's other "
        "tenants only slow a turn, a memory-bound step more than the matmul, and how many "
        "turns they slow changes between invocations. fraction_median: the median over "
        "the turns of each turn's fraction against the mean of the two readings around "
        "it; step_ms, matmul_gflops: medians. The matmul runs as the mode's step does: op by op "
        "in eager, compiled in graph (torch.compile, tf.function, jax.jit), through XLA in "
        "TF's xla, so the matmul is each mode's own ceiling. read_gbps: the host's "
        "memory speed, one core summing a buffer past the cache, timed with each matmul: "
        "the matmul cancels a drift in compute speed, not one in memory speed, which a "
        "step feels more.",
        "scaling": "the MLP's step time and throughput as the batch grows, at its fastest "
        "turn (best_step_ms, its figure; step_ms: the median), and its fraction of the "
        "mode's matmul ceiling, as in the roofline; at the batches the roofline measures "
        "too, its rows and the roofline's come from the same processes.",
    }
    if any((r.get("rounds") or 1) > 1 for r in rows):
        parts += [
            "Each figure is the median over its rounds (rounds: how many), each round a "
            "fresh process, except the fraction and the best_ figures, taken over all the "
            "rounds' turns; spread is "
            "(max - min) / median over the rounds' figures. A measurement whose rounds' "
            f"median had a standard error (1.25 s / sqrt(n)) above {SETTLED_WITHIN:.0%} of "
            "it after --rounds took further rounds, up to --max-rounds.", "",
        ]  # fmt: skip
    for name, df in tables(rows).items():
        parts += [f"## {name}", "", markdown_table(df), "", notes[name], ""]
        half = half_ceiling(rows, name)
        if not half.empty:
            parts += [
                markdown_table(half.round(3)), "",
                f"half_from_batch: the smallest batch from which the MLP's step reaches "
                f"{HALF:.0%} of its mode's matmul ceiling at every larger batch measured too "
                "(-: not even at the largest); best_fraction: the highest fraction, at at_batch.",
                "",
            ]  # fmt: skip
    scaling_rows = [r for r in rows if r["benchmark"] == "scaling"]
    if scaling_rows:
        fig = scaling_figure(pd.DataFrame(scaling_rows), HALF)
        (out / "scaling.png").write_bytes(png(fig))
        parts += ["![scaling](scaling.png)", ""]
    if stable is not None and not stable.empty:
        shown = stable.drop(columns="minimal_mode" if (stable["minimal_mode"] == "").all() else [])
        parts += [
            "## stability", "", markdown_table(shown.round(4)), "",
            f"Each figure against the same measurement's in an earlier invocation (--against): "
            f"change is now / before - 1; stable when within {STABLE_WITHIN:.0%}. "
            "step_change, matmul_change and read_change (roofline and scaling): the same of "
            "the step time (a scaling figure's own), the matmul ceiling and the memory "
            "reading, to tell which moved. "
            f"{held(stable)}.", "",
        ]  # fmt: skip
    path = out / "bench.md"
    path.write_text("\n".join(parts))
    return path

"""What the bench measures: its cases and sizes, the jobs each benchmark plans, and
the bench process (``paired``) that times one measurement."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import data
from harness.backend import BACKENDS, missing_packages
from harness.data.batching import steps_per_epoch
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
BLOCKS = 6  # turns each loop takes in one bench process
BLOCK_STEPS = 25  # the most steps a turn takes
TURN_S = 0.15  # a turn's length: fewer steps of a slow step (paired.turn_steps)
OVERHEAD_CASES = (("mlp", 128), ("lenet", 64))
# the MLP at three batches from 256 up, LeNet at its training batch and a large one
ROOFLINE_CASES = (("mlp", 256), ("mlp", 512), ("mlp", 1024), ("lenet", 64), ("lenet", 256))
SCALING_BATCHES = (32, 64, 128, 256, 512, 1024)
BENCHMARKS = ("overhead", "roofline", "scaling")
TASKS = ("mlp", "lenet")  # what the benchmarks measure (scaling: the MLP only)
# a measurement takes another round while the standard error of its figure's median
# over its rounds is more than this, relative to the median (and it has had fewer
# than max_rounds): two invocations' medians then rarely differ by more than a ratio
# is allowed to move (STABLE_WITHIN)
SETTLED_WITHIN = 0.03
# a bare bench: one process per measurement, its spread the one over its turns
ROUNDS = 1
MAX_ROUNDS = 1
# --thorough: the processes every measurement takes before settling may stop it (a
# few processes can all run at the slower speed, and their fastest turn would settle
# there), and the most it takes while its median is unsettled
THOROUGH_ROUNDS = 5
THOROUGH_MAX_ROUNDS = 7


def rounds_for(thorough: bool, rounds: int | None, max_rounds: int | None) -> tuple[int, int]:
    """The rounds and max rounds a bench takes: those given, else the setting's."""
    default = (THOROUGH_ROUNDS, THOROUGH_MAX_ROUNDS) if thorough else (ROUNDS, MAX_ROUNDS)
    rounds = default[0] if rounds is None else rounds
    return rounds, max(rounds, default[1] if max_rounds is None else max_rounds)


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
    turn_s: float = TURN_S,
    benchmark: str = "bench",
) -> dict[str, Any]:
    """One bench process (``harness.paired``): the harness's step, in turns with the
    minimal loop's in ``minimal_mode`` and with the matmuls when asked; its result, or
    ``{"error": ...}``. Its log is named after ``benchmark`` and the measurement."""
    info = BACKENDS[m.framework]
    missing = missing_packages(info)
    if missing:
        return {"error": f"{m.framework} is not installed (missing: {', '.join(missing)})"}
    if minimal_mode is not None and not info.minimal:
        return {"error": f"{m.framework} declares no hand-written loop (its minimal module)"}
    cfg = PairedConfig(
        spec=bench_spec(m.task, m.batch),
        source=m.task,
        framework=m.framework,
        target=info.target,
        mode=m.mode,
        threads=m.threads,
        blocks=blocks,
        block=block,
        turn_s=turn_s,
        matmul_sizes=tuple(matmul_sizes),
        minimal=None
        if minimal_mode is None
        else {"model": m.task, "batch": m.batch, "mode": minimal_mode},
        minimal_module=info.minimal,
    )
    log = out / "logs" / f"{benchmark}-{_slug(m)}-{minimal_mode or 'alone'}-r{round_}.log"
    result = run_worker(
        "harness.paired",
        cfg,
        thread_env(info, m.threads),
        900.0,
        log,
        lambda e: None,
    )
    if result.record is None:
        return {"error": f"{result.status}: {result.detail}"}
    return result.record


def _slug(m: Measure) -> str:
    return f"{m.task}-b{m.batch}-{m.framework}-{m.mode}-t{m.threads}"


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

    def __str__(self) -> str:
        m, versus = self.m, f" vs {self.minimal_mode}" if self.minimal_mode else ""
        return f"{self.benchmark} {m.task} b{m.batch} {m.framework} {m.mode}{versus}"


def shared(jobs: list[Job]) -> list[list[int]]:
    """The jobs' indices grouped by what their processes time, in the order each
    group first appears: the roofline and the scaling both time the MLP at batches 256
    to 1024 against the matmul, one process for both rows, so that one invocation
    reports one figure for one measurement."""
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
    loops with no harness mode of their own (a backend's ``minimal_only``: Keras's
    model.fit, say) against the mode it declares for them."""
    jobs = []
    for task, batch in OVERHEAD_CASES:
        for fw in frameworks:
            pairs = [(mode, mode) for mode in _modes(fw, modes)]
            extra = BACKENDS[fw].minimal_only
            pairs += [(theirs, ours) for theirs, ours in extra if ours in modes]
            jobs += [
                Job("overhead", Measure(task, batch, fw, mode, threads), their_mode)
                for their_mode, mode in pairs
            ]
    return jobs


def roofline(frameworks: Iterable[str], modes: Iterable[str], threads: int) -> list[Job]:
    """Each roofline case in each framework and mode, against its matmul."""
    return [
        Job("roofline", Measure(task, batch, fw, mode, threads))
        for task, batch in ROOFLINE_CASES
        for fw in frameworks
        for mode in _modes(fw, modes)
    ]


def scaling(frameworks: Iterable[str], modes: Iterable[str], threads: int) -> list[Job]:
    """The MLP at each scaling batch in each framework and mode, against its matmul."""
    return [
        Job("scaling", Measure("mlp", batch, fw, mode, threads))
        for batch in SCALING_BATCHES
        for fw in frameworks
        for mode in _modes(fw, modes)
    ]


def _modes(framework: str, modes: Iterable[str]) -> list[str]:
    return [m for m in modes if m in BACKENDS[framework].modes]


JOBS = {"overhead": overhead, "roofline": roofline, "scaling": scaling}


def planned(
    benchmarks: Iterable[str],
    frameworks: Iterable[str],
    modes: Iterable[str],
    threads: int,
    tasks: list[str],
) -> list[Job]:
    """The named benchmarks' jobs of ``tasks``, in the installed frameworks; a
    UsageError where the benchmarks measure none of ``tasks``."""
    installed = [f for f in frameworks if not missing_packages(BACKENDS[f])]
    every = [job for name in benchmarks for job in JOBS[name](installed, modes, threads)]
    jobs = [job for job in every if job.m.task in tasks]
    if every and not jobs:
        names = ", ".join(sorted({job.benchmark for job in every}))
        raise UsageError(
            f"{names} measures nothing of {', '.join(tasks)} (scaling: the MLP only); "
            "choose other --tasks or benchmarks"
        )
    return jobs

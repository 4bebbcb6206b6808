"""``rosetta bench``'s worker: the harness's training step timed in turns with a
hand-written loop's step and with a float32 matmul, in one process.

This machine's speed drifts by tens of percent within seconds and minutes (other
tenants of the host, the kernel's memory reclaim), by more than the overheads the
bench measures. Two processes timed one after the other compare two speeds of the
machine as much as two loops. Here the harness's step (``timed_step``, the very
clock ``harness.cell`` reads) and the minimal loop (``impls/<fw>/minimal.py``'s
``loop``) run a turn of steps each, the order alternating, ``blocks`` times (a turn:
as many steps as the harness's take ``turn_s``, from ``MIN_BLOCK`` to ``block``);
when asked, the matmul is timed before the first turn and after each. The bench
takes each block's median, and a ratio within one block pair: a drift slower than a
block falls on both sides alike.

``python -m harness.paired`` reads its config as JSON on stdin (``bench.paired``
writes it) and prints the result as the last event line, as ``harness.cell`` does.
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from pydantic import Field

from harness import data
from harness.backend import Backend, Options, load_backend
from harness.cell import peak_rss_mb, timed_step
from harness.init import canonical_weights
from harness.recipes import Recipe, recipe_for
from harness.spec import TaskSpec
from harness.worker import WorkerConfig, emit, read_config

Steps = Callable[[int], tuple[list[float], float]]  # k more steps: their seconds, last loss
# after the first (compiling) step, untimed, for each loop: more than a run's warm-up
# (timing.WARMUP_STEPS), which a run counts and reports, where these cost only time
BENCH_WARMUP_STEPS = 10
MATMUL_REPEATS = 3  # timed calls of each matmul size in each reading
# the fewest steps a turn takes when ``turn_s`` sets its length: a slow step's turn
# still has a median of several
MIN_BLOCK = 5
READ_BYTES = 64 << 20  # the memory reading's buffer: past a last-level cache of 32 MiB


def harness_steps(backend: Backend, state: Any, recipe: Recipe) -> Steps:
    """The harness's training loop as ``steps(k)``: the recipe's batches, epoch after
    epoch, each step timed as ``harness.cell.train`` times it."""

    def forever() -> Iterator[Any]:
        epoch = 0
        while True:
            yield from recipe.batches(epoch)
            epoch += 1

    batches = forever()
    current = [state]

    def steps(k: int) -> tuple[list[float], float]:
        times, values = [], [math.nan]
        for _ in range(k):
            current[0], values, seconds = timed_step(backend, current[0], next(batches))
            times.append(seconds)
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"the harness's loss became {values}")
        return times, values[0]

    return steps


def matmul_reading(backend: Backend, sizes: list[int]) -> dict[int, float]:
    """Each size's matmul FLOP/s (the median of ``MATMUL_REPEATS`` calls)."""
    return {n: backend.matmul_flops(n, MATMUL_REPEATS) for n in sizes}


def read_reading(buffer: np.ndarray) -> float:
    """Bytes per second of a pass over ``buffer`` (summing it: one core, bound by
    memory), the median of ``MATMUL_REPEATS`` passes."""
    times = []
    for _ in range(MATMUL_REPEATS):
        start = time.perf_counter()
        buffer.sum()
        times.append(time.perf_counter() - start)
    return buffer.nbytes / statistics.median(times)


def turn_steps(cfg: PairedConfig, step_s: float) -> int:
    """Steps per turn: ``cfg.block``, or with ``turn_s`` as many as take that long at
    the harness's warm-up step (``step_s``), from ``MIN_BLOCK`` to ``cfg.block``: a
    slow eager step needs fewer steps than a fast one for a steady median."""
    if not cfg.turn_s:
        return cfg.block
    return max(min(MIN_BLOCK, cfg.block), min(cfg.block, math.ceil(cfg.turn_s / step_s)))


def run(cfg: PairedConfig) -> dict[str, Any]:
    """Build both loops, compile and warm each, then time them in turns.

    The result: ``harness_block_s`` (each turn's median step), ``minimal_block_s``
    likewise when a minimal loop was asked for, and ``block_steps`` (the steps of
    every turn, ``turn_steps``); when matmul sizes were,
    ``matmul_flops`` (the best size's FLOP/s before the first turn and after each,
    one more reading than turns), ``matmul_flops_by_n`` (every size's) and
    ``read_gbps`` (the memory reading taken with each); and each loop's first step.

    The memory reading's buffer is allocated first and held to the end, so that the
    process's peak memory is the loops' peak plus its size exactly (``read_mb``)."""
    sizes = list(cfg.matmul_sizes)
    buffer = np.ones(READ_BYTES // 4, np.float32) if sizes else None
    spec = cfg.spec
    dtype = "float32"
    backend = load_backend(cfg.target)
    backend.configure(Options(cfg.mode, cfg.device, cfg.threads, dtype))
    ds = data.load(spec.data)
    shape = ds.sample_shape
    state = backend.build(spec, shape, canonical_weights(spec, shape, dtype))
    loops: dict[str, Steps] = {
        "harness": harness_steps(backend, state, recipe_for(spec, ds, dtype))
    }
    if cfg.minimal:
        loops["minimal"] = importlib.import_module(cfg.minimal_module).loop(cfg.minimal)
    out: dict[str, Any] = {}
    warm = {}
    for name, steps in loops.items():
        out[f"{name}_first_step_s"] = steps(1)[0][0]
        warm[name] = steps(BENCH_WARMUP_STEPS)[0]
    block = out["block_steps"] = turn_steps(cfg, statistics.median(warm["harness"]))
    blocks: dict[str, list[float]] = {name: [] for name in loops}
    # the matmul (and the memory) before the first turn and after each, so that every
    # turn has a ceiling timed on either side of it: blocks + 1 readings of every size
    readings, reads = [], []

    def read() -> None:
        if buffer is not None:
            readings.append(matmul_reading(backend, sizes))
            reads.append(read_reading(buffer))

    read()
    names = list(loops)
    for b in range(cfg.blocks):
        for name in names if b % 2 == 0 else names[::-1]:
            times, out[f"{name}_last_loss"] = loops[name](block)
            blocks[name].append(statistics.median(times))
        read()
    out.update({f"{name}_block_s": medians for name, medians in blocks.items()})
    if buffer is not None:
        out["matmul_flops"] = [max(r.values()) for r in readings]
        out["matmul_flops_by_n"] = {str(n): [r[n] for r in readings] for n in sizes}
        out["read_gbps"] = [x / 1e9 for x in reads]
        out["read_mb"] = buffer.nbytes / 2**20
    return out


class PairedConfig(WorkerConfig):
    """One bench process (``bench.paired`` writes it)."""

    spec: TaskSpec
    source: str = "<bench>"
    framework: str
    target: str
    mode: str
    device: str = "cpu"
    threads: int = 0
    blocks: int = Field(ge=1)
    block: int = Field(ge=1)  # steps per turn; with turn_s, the most
    turn_s: float = Field(0.0, ge=0)  # a turn's length in seconds (0: block steps)
    matmul_sizes: tuple[int, ...] = ()
    minimal: dict[str, Any] | None = None  # the minimal loop's own config (impls/<fw>/minimal.py)
    minimal_module: str = ""


def main() -> None:
    cfg = read_config(PairedConfig)
    try:
        result = run(cfg)
    except Exception as err:  # the bench keeps the reason, and the other measurements
        tail = "".join(traceback.format_exception(err)[-4:])
        result = {"error": f"{type(err).__name__}: {err}\n{tail}".strip()}
    # the memory reading's buffer, held throughout, left out
    result["peak_rss_mb"] = peak_rss_mb() - result.get("read_mb", 0.0)
    emit("record", record=result)


if __name__ == "__main__":
    main()

"""A row's figures from its measurement's processes: medians over turns and rounds,
their spread and uncertainty, and the roofline's fastest turn against its matmul."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from harness import data
from harness.bench.plan import Job, Measure, bench_spec
from harness.flops import train_step_flops


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: list[float]) -> float | None:
    """(max - min) / median over the rounds: how far apart the rounds fell."""
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else None


def _turn_spread(turns: list[list[float]]) -> float | None:
    """``_spread`` over every turn's figure of every round: with one round, the
    spread a bare bench states (its turns timed seconds apart in one process)."""
    return _spread([x for each in turns for x in each])


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


def _best_fraction(flops: float, steps: list[float], matmuls: list[float]) -> float | None:
    """The roofline's figure: the step's FLOP/s at its fastest turn over the matmul's
    at its fastest reading, both timed in the same processes. The host's other tenants
    only ever slow a turn: a step runs at one of two speeds that switch within seconds,
    a memory-bound step slowed more than the compute-bound matmul, and how many turns
    fall on the slower speed changes from one invocation to the next, where the
    fastest turn of each changes far less. A quantile or median over turns lands on
    either speed."""
    return flops / min(steps) / max(matmuls) if steps and matmuls else None


def _around(readings: list[float]) -> list[float]:
    """Each turn's matmul ceiling: the mean of the readings timed just before and just
    after it (the worker takes one more reading than turns)."""
    return [(a + b) / 2 for a, b in itertools.pairwise(readings)]


def _turns(ok: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Every round's per-turn figures as the worker gave them (seconds, FLOP/s), kept
    in the row so that a moved ratio can be traced to the turns that moved it."""
    return [{k: r[k] for k in keys if k in r} for r in ok]


def overhead_row(job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = _ok(results)
    pairs = _each_turn(ok, lambda h, u: h / u, "harness_block_s", "minimal_block_s")
    ratios = [_median(turns) for turns in pairs]
    h = [_median(r["harness_block_s"]) for r in ok]
    u = [_median(r["minimal_block_s"]) for r in ok]
    return {
        "benchmark": "overhead",
        **job.m.__dict__,
        "minimal_mode": job.minimal_mode,
        "harness_ms": _ms(_median(h)),
        "minimal_ms": _ms(_median(u)),
        "ratio": _median(ratios),
        "rounds": len(ratios),
        "ratios": ratios,
        "spread": _spread(ratios),
        "turn_spread": _turn_spread(pairs),
        "uncertainty": _uncertainty(ratios),
        "error": _error(results),
        "harness_ms_rounds": [_ms(x) for x in h],
        "minimal_ms_rounds": [_ms(x) for x in u],
        "turns": _turns(ok, "harness_block_s", "minimal_block_s", "block_steps"),
    }


def roofline_row(job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"benchmark": "roofline", **_against_ceiling(job.m, results)}


def scaling_row(job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    row = _against_ceiling(job.m, results)
    step = row["best_step_ms"]
    return {
        "benchmark": "scaling",
        **row,
        "samples_per_s": None if not step else 1000 * job.m.batch / step,
        # of its figure, the step time at its fastest turn
        "spread": _spread(row["best_step_ms_rounds"]),
        "turn_spread": _turn_spread([r["harness_block_s"] for r in _ok(results)]),
        "uncertainty": _uncertainty(row["best_step_ms_rounds"]),
    }


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
    by_n = {
        n: _median([_median(r["matmul_flops_by_n"][n]) for r in ok])
        for n in (ok[0].get("matmul_flops_by_n", {}) if ok else {})
    }
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
        "rounds": len(fractions),
        "fractions": fractions,
        "spread": _spread(fractions),
        "turn_spread": _turn_spread(turns),
        "uncertainty": _uncertainty(fractions),
        "step_ms_rounds": [_ms(x) for x in steps],
        "best_step_ms_rounds": [_ms(min(r["harness_block_s"])) for r in ok],
        "matmul_gflops_rounds": [x / 1e9 for x in peaks],
        # which size sets the ceiling: each size's median over readings and rounds
        "matmul_gflops_by_n": {n: x / 1e9 for n, x in by_n.items()},
        # the host's memory speed, read with each matmul: a fraction that moved while
        # the matmul held may have moved with it
        "read_gbps": _median(reads),
        "read_gbps_rounds": reads,
        "turns": _turns(ok, "harness_block_s", "matmul_flops_by_n", "read_gbps", "block_steps"),
        "peak_rss_mb": _median([r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb")]),
        "error": _error(results),
    }


ROWS = {"overhead": overhead_row, "roofline": roofline_row, "scaling": scaling_row}


def row(job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    """A job's row from its measurement's processes so far."""
    return ROWS[job.benchmark](job, results)

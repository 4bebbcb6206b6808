"""The bench's statistics (harness/bench/stats.py) on hand-made processes' results:
no process runs, so each figure is checked against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.bench.plan import Job, Measure
from harness.bench.stats import (
    _around,
    _best_fraction,
    _each_turn,
    _median,
    _ms,
    _spread,
    _turn_spread,
    _turns,
    _uncertainty,
    overhead_row,
    roofline_row,
    scaling_row,
)

# LeNet's training step at batch 64, in FLOPs (see test_flops.py)
LENET_B64_FLOPS = 64 * (2 * 288_000 + 3 * (934_400 - 288_000))


def _result(harness_s, minimal_s=None, matmul=None) -> dict:
    """One bench process's result as the worker gives it: per-turn step seconds, the
    minimal loop's when compared with one, the matmul readings (one before the first
    turn and one after each) when asked, with the memory reading."""
    result = {"harness_block_s": list(harness_s), "peak_rss_mb": 100.0}
    if minimal_s is not None:
        result["minimal_block_s"] = list(minimal_s)
    if matmul is not None:
        result["matmul_flops"] = list(matmul)
        result["matmul_flops_by_n"] = {"1024": list(matmul), "2048": [x / 2 for x in matmul]}
        result["read_gbps"] = [20.0 + i for i in range(len(matmul))]
    return result


def test_median_and_ms():
    assert _median([]) is None
    assert _median([3.0, 1.0, 2.0]) == 2.0
    assert _median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert _ms(None) is None and _ms(0.0105) == pytest.approx(10.5)


def test_spread_is_the_range_over_the_median():
    assert _spread([1.0]) is None  # one round: nothing to spread
    assert _spread([1.0, 3.0, 2.0]) == pytest.approx(1.0)  # (3 - 1) / 2
    assert _spread([0.9, 1.0, 1.2]) == pytest.approx(0.3)


def test_uncertainty_is_the_standard_error_of_the_median_relative_to_it():
    assert _uncertainty([1.0]) is None
    assert _uncertainty([0.0, 0.0, 0.0]) is None  # no median to be relative to
    # s = 1 over 1, 2, 3; sqrt(pi / 2) * 1 / sqrt(3) / 2
    assert _uncertainty([1.0, 2.0, 3.0]) == pytest.approx(1.2533141 / math.sqrt(3) / 2)
    assert _uncertainty([2.0, 2.0]) == 0.0
    assert _uncertainty([-1.0, -2.0, -3.0]) == pytest.approx(_uncertainty([1.0, 2.0, 3.0]))


def test_best_fraction_is_the_fastest_step_over_the_fastest_matmul():
    # 1e9 FLOPs in 10 ms: 1e11 FLOP/s, over the 2e11 reading
    assert _best_fraction(1e9, [0.02, 0.01, 0.015], [1e11, 2e11]) == pytest.approx(0.5)
    assert _best_fraction(1e9, [], [2e11]) is None
    assert _best_fraction(1e9, [0.01], []) is None


def test_turns_pair_up_within_each_round():
    assert _around([1.0, 3.0, 5.0]) == [2.0, 4.0]
    ok = [{"a": [2.0, 4.0, 9.0], "b": [1.0, 2.0, 3.0]}, {"a": [1.0], "b": [4.0]}]
    assert _each_turn(ok, lambda a, b: a / b, "a", "b") == [[2.0, 2.0, 3.0], [0.25]]
    assert _turn_spread(_each_turn(ok, lambda a, b: a / b, "a", "b")) == pytest.approx(1.375)
    assert _turns(ok, "a", "missing") == [{"a": [2.0, 4.0, 9.0]}, {"a": [1.0]}]
    with pytest.raises(ValueError):  # a turn short on one side
        _each_turn([{"a": [1.0, 2.0], "b": [1.0]}], lambda a, b: a / b, "a", "b")


def test_the_ratio_is_taken_within_each_turn_pair_so_a_drift_cancels():
    # the machine slows by half, then recovers a little, between the turn pairs
    speed = [1.0, 2.0, 1.5]
    job = Job("overhead", Measure("mlp", 128, "torch", "eager"), "eager")
    results = [_result([0.0105 * x for x in speed], [0.010 * x for x in speed])] * 3
    row = overhead_row(job, results)
    assert row["ratio"] == pytest.approx(1.05) and row["ratios"] == pytest.approx([1.05] * 3)
    assert row["rounds"] == 3 and row["spread"] == pytest.approx(0, abs=1e-12)
    assert row["harness_ms"] == pytest.approx(10.5 * 1.5)  # the median turn's


def test_roofline_fraction_is_the_fastest_turn_over_the_fastest_matmul():
    # readings before the first turn, between the two and after the second: the
    # ceilings around the turns are 2e11 and 1e11, the matmul slowed with the steps
    job = Job("roofline", Measure("lenet", 64, "jax", "graph"))
    row = roofline_row(job, [_result([0.01, 0.02], matmul=[3e11, 1e11, 1e11])])
    flops = LENET_B64_FLOPS
    # not the fast turn against its slowed matmul (flops / 0.01 / 2e11)
    assert row["fraction"] == pytest.approx(flops / 0.01 / 3e11)
    assert row["best_step_ms"] == pytest.approx(10.0) and row["best_matmul_gflops"] == 300.0
    assert row["fraction"] == pytest.approx(row["achieved_gflops"] / row["best_matmul_gflops"])
    # each turn against the readings around it: both turns' fraction
    assert row["fraction_median"] == pytest.approx(flops / 0.01 / 2e11)
    assert row["step_ms"] == pytest.approx(15.0) and row["matmul_gflops"] == 100.0  # medians
    assert row["peak_rss_mb"] == 100.0
    assert row["matmul_gflops_by_n"] == pytest.approx({"1024": 100.0, "2048": 50.0})
    assert row["turns"] == [
        {
            "harness_block_s": [0.01, 0.02],
            "matmul_flops_by_n": {"1024": [3e11, 1e11, 1e11], "2048": [1.5e11, 5e10, 5e10]},
            "read_gbps": [20.0, 21.0, 22.0],
        }
    ]
    assert row["read_gbps"] == 21.0 and row["read_gbps_rounds"] == [21.0]


def test_a_worker_giving_one_reading_per_turn_is_refused():
    job = Job("roofline", Measure("lenet", 64, "jax", "graph"))
    with pytest.raises(ValueError):
        roofline_row(job, [_result([0.01, 0.02], matmul=[2e11, 1e11])])


def test_the_fraction_is_the_fastest_turn_wherever_it_fell():
    # a step at two speeds, 10 or 15 ms, switching turn by turn: a third of the turns
    # fast in both benches, all in one process in the first, spread in the second
    fast, slow = [0.010] * 4, [0.015] * 4
    job = Job("roofline", Measure("lenet", 64, "jax", "graph"))

    def fraction(processes: list[list[float]]) -> dict:
        results = [{"harness_block_s": p, "matmul_flops": [2e11] * 5} for p in processes]
        return roofline_row(job, results)

    together = fraction([fast, slow, slow])
    spread = fraction([fast[:2] + slow[:2], slow[:2] + fast[2:], slow])
    flops = LENET_B64_FLOPS
    assert together["fraction"] == spread["fraction"] == pytest.approx(flops / 0.010 / 2e11)
    # where the median of the rounds' figures lands on the slow speed in one
    assert np.median(together["fractions"]) == pytest.approx(flops / 0.015 / 2e11)
    assert together["fraction_median"] == pytest.approx(flops / 0.015 / 2e11)


def test_scaling_rows_carry_the_fraction_of_the_matmul_timed_around_their_turns():
    job = Job("scaling", Measure("mlp", 256, "tf", "graph"))
    row = scaling_row(job, [_result([0.01, 0.02], matmul=[3e11, 1e11, 1e11])])
    flops = 256 * (2 * 2 * 784 * 512 + 3 * 2 * (512 * 256 + 256 * 128 + 128 * 64 + 64 * 10))
    assert row["fraction"] == pytest.approx(flops / 0.01 / 3e11)  # as in the roofline
    assert row["samples_per_s"] == pytest.approx(256 / 0.01)  # at the fastest turn
    assert row["achieved_gflops"] == pytest.approx(flops / 0.01 / 1e9)
    assert row["best_step_ms_rounds"] == pytest.approx([10.0])


def test_one_process_states_the_spread_over_its_turns():
    # the spread a bare bench gives: over the turns of its one process, per benchmark
    over = overhead_row(
        Job("overhead", Measure("mlp", 128, "torch", "eager"), "eager"),
        [_result([0.011, 0.012, 0.010], [0.010, 0.010, 0.010])],
    )
    assert over["spread"] is None and over["turn_spread"] == pytest.approx(0.2 / 1.1)
    roof = roofline_row(
        Job("roofline", Measure("lenet", 64, "jax", "graph")),
        [_result([0.01, 0.02], matmul=[2e11, 2e11, 2e11])],
    )
    assert roof["turn_spread"] == pytest.approx((1 - 0.5) / 0.75)  # fractions f and f/2
    scaled = scaling_row(
        Job("scaling", Measure("mlp", 256, "torch", "graph")),
        [_result([0.01, 0.03, 0.02], matmul=[2e11] * 4)],
    )
    assert scaled["turn_spread"] == pytest.approx(0.02 / 0.02)  # of its step times

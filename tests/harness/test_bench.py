"""rosetta bench without a framework: its specs, ratios, tables and report."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from harness import bench
from harness.backend import BACKENDS
from harness.bench import plan
from harness.bench.stats import _uncertainty
from harness.cli import main
from harness.spec import resolve_task
from harness.validate import UsageError


def test_bench_spec_sets_batch_and_drops_the_target():
    spec = bench.bench_spec("mlp", 256)
    assert spec.recipe.batch_size == 256 and spec.recipe.target is None
    assert bench.bench_spec("lenet", 64).model == resolve_task("lenet").model
    with pytest.raises(ValueError, match="larger than"):
        bench.bench_spec("lenet", 4096)


def _fake(monkeypatch, harness_s, minimal_s=None, matmul=None, seen=None, taken=None):
    """plan.paired faked, every framework installed: every process gives these
    per-turn medians (``seen``: each process's minimal mode; ``taken``: its
    measurement and round)."""

    def paired(m, out, minimal_mode=None, matmul_sizes=(), round_=0, **kw):
        if seen is not None:
            seen.append(minimal_mode)
        if taken is not None:
            taken.append((m.framework, m.mode, round_))
        result = {"harness_block_s": list(harness_s), "peak_rss_mb": 100.0}
        if minimal_mode is not None:
            result["minimal_block_s"] = list(minimal_s)
        if matmul_sizes:
            result["matmul_flops"] = list(matmul)
            result["matmul_flops_by_n"] = {"1024": list(matmul), "2048": [x / 2 for x in matmul]}
            result["read_gbps"] = [20.0 + i for i in range(len(matmul))]
        return result

    monkeypatch.setattr(plan, "paired", paired)
    monkeypatch.setattr(plan, "missing_packages", lambda info: [])


def test_overhead_ratio_is_harness_over_minimal(monkeypatch, tmp_path):
    _fake(monkeypatch, [0.011, 0.011], [0.010, 0.010])
    rows = bench.run_bench(["overhead"], ["torch"], ["eager"], tmp_path)
    assert [r["ratio"] for r in rows] == pytest.approx([1.1, 1.1])
    assert len((tmp_path / "bench.jsonl").read_text().splitlines()) == 2


def test_a_failed_measurement_keeps_its_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(plan, "paired", lambda m, out, *a, **k: {"error": "boom"})
    monkeypatch.setattr(plan, "missing_packages", lambda info: [])
    rows = bench.run_bench(["overhead"], ["tf"], ["graph"], tmp_path)
    assert rows[0]["ratio"] is None and rows[0]["error"] == "boom"


def test_roofline_rounds_pool_their_turns_and_keep_a_failed_rounds_reason(monkeypatch, tmp_path):
    # each round's fraction: its fastest turn over its fastest reading
    results = iter(
        [
            {"harness_block_s": [0.01], "matmul_flops": [2e11, 2e11]},
            {"error": "boom"},
            {"harness_block_s": [0.02], "matmul_flops": [1e11, 3e11]},
        ]
    )
    monkeypatch.setattr(plan, "paired", lambda m, out, *a, **k: next(results))
    monkeypatch.setattr(plan, "missing_packages", lambda info: [])
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("mlp", 256),))
    (row,) = bench.run_bench(["roofline"], ["torch"], ["graph"], tmp_path, rounds=3, max_rounds=3)
    assert row["rounds"] == 2 and row["error"] == "boom"
    assert row["fractions"][0] == pytest.approx(3 * row["fractions"][1])
    # the first round's 10 ms step over the second's 3e11 reading
    assert row["fraction"] == pytest.approx(2 / 3 * row["fractions"][0])
    # each turn over the mean of its readings: 2e11 both
    assert row["fraction_median"] == pytest.approx(0.75 * row["fractions"][0])
    assert row["spread"] == pytest.approx(1.0)
    # each round's step and ceiling, to tell which of the two moved
    assert row["step_ms_rounds"] == pytest.approx([10.0, 20.0])
    assert row["matmul_gflops_rounds"] == pytest.approx([200.0, 200.0])
    md = bench.write_markdown([row], tmp_path, "rosetta bench --rounds 3").read_text()
    assert "median over its rounds" in md and "spread" in md


def test_rounds_are_passes_over_every_measurement(monkeypatch, tmp_path):
    # a measurement's rounds a pass apart, so that a slow stretch meets one of them
    taken: list = []
    _fake(monkeypatch, [0.01], matmul=[2e11, 2e11], taken=taken)
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("mlp", 256),))
    said: list = []
    rows = bench.run_bench(
        ["roofline"], ["torch", "jax"], ["graph"], tmp_path, say=said.append, rounds=2
    )
    assert taken == [
        ("torch", "graph", 0),
        ("jax", "graph", 0),
        ("torch", "graph", 1),
        ("jax", "graph", 1),
    ]
    assert [(r["framework"], r["rounds"]) for r in rows] == [("torch", 2), ("jax", 2)]
    assert said == rows == bench.read_rows(tmp_path)


def test_an_interrupted_bench_keeps_the_rounds_it_took(monkeypatch, tmp_path):
    results = iter([{"harness_block_s": [0.01], "matmul_flops": [2e11, 2e11]}] * 2)

    def paired(*args, **kwargs):
        result = next(results, None)
        if result is None:  # the third process: the user presses Ctrl-C
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(plan, "paired", paired)
    monkeypatch.setattr(plan, "missing_packages", lambda info: [])
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("mlp", 256),))
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(["roofline"], ["torch", "jax"], ["graph"], tmp_path, rounds=3)
    rows = bench.read_rows(tmp_path)
    assert [(r["framework"], r["rounds"]) for r in rows] == [("torch", 1), ("jax", 1)]
    assert all(r["fraction"] > 0 for r in rows)


def _steps(monkeypatch, steps: dict, taken: list):
    """plan.paired faked: each framework's processes step in turn at the seconds in
    ``steps[framework]``, against a steady matmul; ``taken``: each process's
    framework and round."""

    def paired(m, out, minimal_mode=None, matmul_sizes=(), round_=0, **kw):
        taken.append((m.framework, round_))
        if round_ >= len(steps[m.framework]):  # the user presses Ctrl-C
            raise KeyboardInterrupt
        return {"harness_block_s": [steps[m.framework][round_]], "matmul_flops": [2e11] * 2}

    monkeypatch.setattr(plan, "paired", paired)
    monkeypatch.setattr(plan, "missing_packages", lambda info: [])
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("lenet", 64),))


def test_an_unsettled_median_takes_more_rounds_in_passes_over_the_unsettled(monkeypatch, tmp_path):
    # torch's processes agree; jax's fall into two speeds, 10 ms or 15 ms a step, so
    # the median of three could land on either: jax takes rounds up to max_rounds
    taken: list = []
    jax = [0.010, 0.015, 0.010, 0.015, 0.010, 0.010, 0.015, 0.010]
    _steps(monkeypatch, {"torch": [0.010, 0.0101, 0.0099], "jax": jax}, taken)
    rows = bench.run_bench(
        ["roofline"], ["torch", "jax"], ["graph"], tmp_path, rounds=3, max_rounds=7
    )
    assert taken == [
        ("torch", 0),
        ("jax", 0),
        ("torch", 1),
        ("jax", 1),
        ("torch", 2),
        ("jax", 2),
        ("jax", 3),
        ("jax", 4),
        ("jax", 5),
        ("jax", 6),
    ]
    torch, jax_row = rows  # in the order of the jobs, though torch's was done first
    assert (torch["framework"], torch["rounds"]) == ("torch", 3)
    assert torch["uncertainty"] <= bench.SETTLED_WITHIN
    assert (jax_row["framework"], jax_row["rounds"]) == ("jax", 7)
    assert jax_row["uncertainty"] > bench.SETTLED_WITHIN  # still: it ran out of rounds
    assert jax_row["fraction"] == pytest.approx(jax_row["fractions"][0])  # a 10 ms round's
    assert [r["framework"] for r in bench.read_rows(tmp_path)] == ["torch", "jax"]


def test_a_median_settles_once_its_standard_error_is_small(monkeypatch, tmp_path):
    taken: list = []
    steps = [0.010, 0.0112, 0.010, 0.0101, 0.0100, 0.0101, 0.0100]  # settles at 5
    _steps(monkeypatch, {"torch": steps}, taken)
    (row,) = bench.run_bench(["roofline"], ["torch"], ["graph"], tmp_path, rounds=3)
    errors = [_uncertainty(row["fractions"][:n]) for n in range(3, row["rounds"] + 1)]
    assert row["rounds"] == 5 and errors[-1] <= bench.SETTLED_WITHIN
    assert all(e > bench.SETTLED_WITHIN for e in errors[:-1])
    sd = np.std(row["fractions"], ddof=1)
    assert errors[-1] == pytest.approx(
        1.2533 * sd / math.sqrt(row["rounds"]) / np.median(row["fractions"]), rel=1e-3
    )


def test_an_interrupted_settling_keeps_the_rounds_it_took(monkeypatch, tmp_path):
    taken: list = []
    _steps(monkeypatch, {"torch": [0.010] * 3, "jax": [0.010, 0.015, 0.010, 0.015]}, taken)
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(["roofline"], ["torch", "jax"], ["graph"], tmp_path, rounds=3)
    assert [(r["framework"], r["rounds"]) for r in bench.read_rows(tmp_path)] == [
        ("torch", 3),
        ("jax", 4),
    ]


def test_tasks_choose_the_measurements(monkeypatch, tmp_path, capsys):
    taken: list = []
    _fake(monkeypatch, [0.01], matmul=[2e11, 2e11], taken=taken)
    rows = bench.run_bench(["roofline"], ["torch"], ["graph"], tmp_path, tasks=["lenet"])
    assert {(r["task"], r["batch"]) for r in rows} == {("lenet", 64), ("lenet", 256)}
    with pytest.raises(UsageError, match="allowed: mlp, lenet"):
        bench.run_bench(["roofline"], ["torch"], ["graph"], tmp_path, tasks=["resnet"])
    with pytest.raises(UsageError, match="scaling: the MLP only"):
        bench.run_bench(["scaling"], ["torch"], ["graph"], tmp_path, tasks=["lenet"])
    assert main(["bench", "scaling", "--tasks", "lenet", "--out", str(tmp_path)]) == 2
    assert "measures nothing of lenet" in capsys.readouterr().err


def test_rounds_must_be_positive(tmp_path, capsys):
    with pytest.raises(UsageError, match="rounds"):
        bench.run_bench(["overhead"], ["torch"], ["eager"], tmp_path, rounds=0)
    assert main(["bench", "overhead", "--rounds", "0", "--out", str(tmp_path)]) == 2
    assert "--rounds must be 1 or more" in capsys.readouterr().err


def test_markdown_has_every_table_and_the_scaling_figure(tmp_path):
    rows = [
        {
            "benchmark": "overhead",
            "task": "mlp",
            "batch": 128,
            "framework": "torch",
            "mode": "eager",
            "threads": 0,
            "minimal_mode": "eager",
            "harness_ms": 1.1,
            "minimal_ms": 1.0,
            "ratio": 1.1,
        },
        {
            "benchmark": "roofline",
            "task": "mlp",
            "batch": 256,
            "framework": "torch",
            "mode": "graph",
            "threads": 0,
            "step_ms": 9.0,
            "best_step_ms": 8.0,
            "achieved_gflops": 98.0,
            "best_matmul_gflops": 196.0,
            "fraction": 0.5,
        },
    ] + [
        {
            "benchmark": "scaling",
            "task": "mlp",
            "batch": b,
            "framework": fw,
            "mode": "graph",
            "threads": 0,
            "step_ms": b / 50,
            "best_step_ms": b / 55,
            "samples_per_s": 55_000.0,
            "achieved_gflops": 80.0,
            "fraction": b / 100,
        }
        for b in (32, 64)
        for fw in ("torch", "jax")
    ]
    md = bench.write_markdown(rows, tmp_path, "rosetta bench").read_text()
    for name in ("## overhead", "## roofline", "## scaling", "![scaling](scaling.png)"):
        assert name in md
    # the roofline's MLP row reaches half its ceiling at its one batch
    assert "| torch | graph | 256 | 256-256 | 0.5 | 256 |" in md
    assert "| jax | graph | 64 | 32-64 | 0.64 | 64 |" in md  # scaling's: only its largest
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_bench_rejects_unknown_names(capsys):
    assert main(["bench", "speed"]) == 2
    assert "unknown benchmark 'speed'" in capsys.readouterr().err
    assert main(["bench", "--frameworks", "mxnet"]) == 2


def test_rows_are_json(tmp_path, monkeypatch):
    _fake(monkeypatch, [0.01], matmul=[2e11, 2e11])
    bench.run_bench(["scaling"], ["torch"], ["eager"], tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in rows] == list(plan.SCALING_BATCHES)


def test_the_cli_says_from_which_batch_each_mode_reaches_half_its_ceiling(
    monkeypatch, tmp_path, capsys
):
    _fake(monkeypatch, [0.01, 0.01], matmul=[1e11, 1e11, 1e11])  # fraction 0.676 at 256
    monkeypatch.setattr(plan, "SCALING_BATCHES", (32, 256))  # 0.085 at 32
    args = ["bench", "scaling", "--frameworks", "tf", "--modes", "xla", "--out", str(tmp_path)]
    assert main(args + ["--rounds", "1"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("scaling: the MLP's step at 50%") :].splitlines()
    assert summary[1].split() == [
        "framework",
        "mode",
        "half_from_batch",
        "batches",
        "best_fraction",
        "at_batch",
    ]
    assert summary[2].split() == ["tf", "xla", "256", "32-256", "0.676", "256"]


def test_roofline_and_scaling_of_one_measurement_share_a_process_named_for_both(
    monkeypatch, tmp_path
):
    logs: list = []

    def run_worker(module, cfg, env, timeout, log, on_event):
        logs.append(log.name)
        return type("Result", (), {"record": None, "status": "crashed", "detail": "boom"})()

    monkeypatch.setattr(plan, "run_worker", run_worker)
    monkeypatch.setattr(plan, "missing_packages", lambda info: [])
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("mlp", 256),))
    monkeypatch.setattr(plan, "SCALING_BATCHES", (128, 256))
    rows = bench.run_bench(["roofline", "scaling"], ["torch"], ["eager"], tmp_path)
    assert [r["error"] for r in rows] == ["crashed: boom"] * 3
    assert logs == [
        "roofline+scaling-mlp-b256-torch-eager-t0-alone-r0.log",
        "scaling-mlp-b128-torch-eager-t0-alone-r0.log",
    ]


def test_rows_of_one_measurement_take_its_rounds_until_every_one_settles(monkeypatch, tmp_path):
    # each process of the MLP at b256 gives a step and a matmul that move together:
    # the roofline's fraction is steady from the first round, the scaling's figure
    # (its fastest step) is not, so the shared processes go on to max_rounds
    steps = [0.010, 0.015] * 4
    taken: list = []

    def paired(m, out, minimal_mode=None, matmul_sizes=(), round_=0, **kw):
        taken.append((m.batch, round_, kw["benchmark"]))
        step = steps[round_] if m.batch == 256 else 0.005
        ceiling = 3e-3 / step * 1e11  # 3e11 with the 10 ms step, 2e11 with the 15
        return {"harness_block_s": [step], "matmul_flops": [ceiling] * 2}

    monkeypatch.setattr(plan, "paired", paired)
    monkeypatch.setattr(plan, "missing_packages", lambda info: [])
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("mlp", 256),))
    monkeypatch.setattr(plan, "SCALING_BATCHES", (128, 256))
    rows = bench.run_bench(
        ["roofline", "scaling"], ["torch"], ["graph"], tmp_path, rounds=3, max_rounds=6
    )
    assert taken == [
        (256, 0, "roofline+scaling"),
        (128, 0, "scaling"),
        (256, 1, "roofline+scaling"),
        (128, 1, "scaling"),
        (256, 2, "roofline+scaling"),
        (128, 2, "scaling"),
        (256, 3, "roofline+scaling"),
        (256, 4, "roofline+scaling"),
        (256, 5, "roofline+scaling"),
    ]
    roof, small, scaled = rows  # in the order of the jobs
    assert (roof["benchmark"], small["batch"], scaled["batch"]) == ("roofline", 128, 256)
    assert roof["uncertainty"] == pytest.approx(0, abs=1e-12)
    assert scaled["uncertainty"] > bench.SETTLED_WITHIN
    assert roof["rounds"] == scaled["rounds"] == 6 and small["rounds"] == 3
    # one measurement, one figure: both rows from the same turns
    assert roof["turns"] == scaled["turns"] and roof["fraction"] == scaled["fraction"]


def _fractions(fw: str, mode: str, by_batch: dict[int, float | None]) -> list[dict]:
    return [
        {
            "benchmark": "scaling",
            "task": "mlp",
            "batch": b,
            "framework": fw,
            "mode": mode,
            "fraction": f,
        }
        for b, f in by_batch.items()
    ]


def test_half_ceiling_is_the_batch_from_which_every_larger_one_reaches_half():
    rows = (
        _fractions("torch", "graph", {64: 0.6, 128: 0.4, 256: 0.55, 512: 0.7})  # dips at 128
        + _fractions("tf", "graph", {64: 0.1, 128: 0.3, 256: 0.45, 512: 0.49})  # never
        + _fractions("jax", "graph", {64: 0.5, 128: 0.7, 256: None, 512: 0.6})  # 256 failed
        + [{**_fractions("jax", "eager", {64: 0.9})[0], "task": "lenet"}]  # not the MLP
    )
    half = bench.half_ceiling(rows, "scaling").set_index(["framework", "mode"])
    assert list(half.index) == [("torch", "graph"), ("tf", "graph"), ("jax", "graph")]
    assert half.loc[("torch", "graph"), "half_from_batch"] == 256
    assert half.loc[("tf", "graph"), "half_from_batch"] is pd.NA
    assert half.loc[("tf", "graph"), "best_fraction"] == 0.49
    assert half.loc[("tf", "graph"), "at_batch"] == 512
    assert half.loc[("jax", "graph"), "half_from_batch"] == 64
    assert bench.half_ceiling([], "scaling").empty
    assert bench.half_ceiling(rows, "roofline").empty


def test_keras_fit_is_compared_with_the_harness_graph_step(monkeypatch, tmp_path):
    seen: list = []
    _fake(monkeypatch, [0.002], [0.004], seen=seen)
    rows = bench.run_bench(["overhead"], ["tf"], ["graph"], tmp_path)
    assert seen == ["graph", "fit"] * 2
    fit = [r for r in rows if r["minimal_mode"] == "fit"]
    assert len(fit) == 2 and fit[0]["mode"] == "graph" and fit[0]["ratio"] == pytest.approx(0.5)


def test_jax_graph_is_compared_with_both_the_nnx_and_the_functional_loop(monkeypatch, tmp_path):
    seen: list = []
    _fake(monkeypatch, [0.002], [0.002], seen=seen)
    rows = bench.run_bench(["overhead"], ["jax"], ["eager", "graph"], tmp_path)
    assert seen == ["eager", "graph", "functional"] * 2
    assert {(r["mode"], r["minimal_mode"]) for r in rows} == {
        ("eager", "eager"),
        ("graph", "graph"),
        ("graph", "functional"),
    }


def test_worker_takes_turns_and_times_the_matmul_around_each(tmp_path):
    from harness import paired
    from tests.harness import fake_minimal

    fake_minimal.CALLS.clear()
    cfg = paired.PairedConfig(
        spec=bench.bench_spec("mlp", 32),
        framework="fake",
        target="tests.harness.fake_backend:NumpyBackend",
        mode="eager",
        blocks=3,
        block=4,
        matmul_sizes=(32, 64),
        minimal={"batch": 16},
        minimal_module="tests.harness.fake_minimal",
    )
    result = paired.run(cfg)
    assert fake_minimal.CALLS == [1, paired.BENCH_WARMUP_STEPS, 4, 4, 4]
    assert result["block_steps"] == 4
    for key in ("harness_block_s", "minimal_block_s"):
        assert len(result[key]) == 3 and all(v > 0 for v in result[key]), key
    # a reading before the first turn and after each, of every size, and of the memory
    assert len(result["matmul_flops"]) == 4 and set(result["matmul_flops_by_n"]) == {"32", "64"}
    assert len(result["read_gbps"]) == 4 and min(result["read_gbps"]) > 0
    assert result["read_mb"] == paired.READ_BYTES / 2**20
    for i, best in enumerate(result["matmul_flops"]):
        assert best == max(v[i] for v in result["matmul_flops_by_n"].values()) > 0
    assert result["harness_first_step_s"] > 0 and math.isfinite(result["harness_last_loss"])


def test_a_turn_takes_as_many_steps_as_its_length_allows():
    from harness import paired

    cfg = paired.PairedConfig(
        spec=bench.bench_spec("mlp", 32),
        framework="fake",
        target="x:Y",
        mode="eager",
        blocks=2,
        block=25,
        turn_s=0.15,
    )
    assert paired.turn_steps(cfg, 0.001) == 25  # a fast step: the most
    assert paired.turn_steps(cfg, 0.01) == 15
    assert paired.turn_steps(cfg, 0.5) == paired.MIN_BLOCK  # a slow one: still a median
    assert paired.turn_steps(cfg.model_copy(update={"turn_s": 0.0}), 0.5) == 25
    assert paired.turn_steps(cfg.model_copy(update={"block": 3}), 0.5) == 3


def test_matmul_operands_are_drawn_once_per_size_and_cannot_be_changed():
    from harness.backend import matmul_operands

    a, b = matmul_operands(16)
    assert matmul_operands(16)[0] is a and a.dtype == b.dtype == np.float32
    assert a.shape == b.shape == (16, 16) and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="read-only"):
        a[0, 0] = 1.0


def test_worker_reports_a_failure_as_its_result(monkeypatch, tmp_path):
    # through the real subprocess protocol: a loop that cannot be built is the
    # measurement's error, not a crash of the bench
    from tests.harness.test_runner import FAKE

    m = bench.Measure("mlp", 32, "fake", "eager")
    monkeypatch.setitem(BACKENDS, "fake", FAKE)  # declares no hand-written loop
    assert "fake declares no hand-written loop" in bench.paired(m, tmp_path, "eager")["error"]
    monkeypatch.setitem(BACKENDS, "fake", dataclasses.replace(FAKE, minimal="impls.fake.minimal"))
    result = bench.paired(m, tmp_path, minimal_mode="eager", blocks=1, block=1)
    assert "No module named 'impls.fake'" in result["error"]  # named, but not there
    assert result["peak_rss_mb"] > 0


def test_the_peak_memory_leaves_out_the_memory_readings_buffer(monkeypatch, tmp_path):
    # through the real subprocess: the same process with and without the readings
    from tests.harness.test_runner import FAKE

    monkeypatch.setitem(BACKENDS, "fake", FAKE)
    m = bench.Measure("mlp", 32, "fake", "eager")
    alone = bench.paired(m, tmp_path, blocks=1, block=1)
    read = bench.paired(m, tmp_path, matmul_sizes=(32,), blocks=1, block=1)
    assert "read_gbps" not in alone and read["read_mb"] == 64
    assert abs(read["peak_rss_mb"] - alone["peak_rss_mb"]) < 16, (alone, read)


def _overhead_row(framework: str, ratio: float | None, mode: str = "graph") -> dict:
    return {
        "benchmark": "overhead",
        "task": "mlp",
        "batch": 128,
        "framework": framework,
        "mode": mode,
        "threads": 0,
        "minimal_mode": mode,
        "harness_ms": 1.0,
        "minimal_ms": 1.0,
        "ratio": ratio,
    }


def test_stability_compares_each_ratio_with_the_same_measurement_before(tmp_path):
    before = [_overhead_row("torch", 1.00), _overhead_row("tf", 1.00), _overhead_row("jax", 0.9)]
    now = [
        _overhead_row("torch", 1.05),
        _overhead_row("tf", 1.20),
        _overhead_row("jax", None),
        _overhead_row("torch", 1.0, mode="eager"),
    ]
    df = bench.stability(now, before)
    assert df["change"].tolist()[:2] == pytest.approx([0.05, 0.20])
    assert df["stable"].tolist() == [True, False, None, None]  # no figure, or none before
    path = bench.write_markdown(now, tmp_path, "rosetta bench --against x", df)
    assert (
        "## stability" in path.read_text()
        and "1 of 2 compared held within 10% (2 with no figure before or now)" in path.read_text()
    )


def test_stability_says_whether_the_step_the_matmul_or_the_memory_moved():
    row = {
        "benchmark": "roofline",
        "task": "mlp",
        "batch": 1024,
        "framework": "tf",
        "mode": "graph",
        "threads": 0,
        "fraction": 0.6,
        "best_step_ms": 10.0,
        "best_matmul_gflops": 400.0,
        "read_gbps": 20.0,
    }
    slow = {
        **row,
        "fraction": 0.45,
        "best_step_ms": 13.0,
        "best_matmul_gflops": 390.0,
        "read_gbps": 15.0,
    }
    (moved,) = bench.stability([slow], [row]).to_dict("records")
    assert moved["change"] == pytest.approx(-0.25) and not moved["stable"]
    assert moved["step_change"] == pytest.approx(0.3)
    assert moved["matmul_change"] == pytest.approx(-0.025)
    assert moved["read_change"] == pytest.approx(-0.25)
    # an earlier bench without the memory reading: that part is unknown
    (old,) = bench.stability([slow], [{**row, "read_gbps": None}]).to_dict("records")
    assert old["read_change"] is None and old["step_change"] == pytest.approx(0.3)
    # a scaling figure is its best step: its change says it, its step_change stays empty
    scaled = {**row, "benchmark": "scaling"}
    (step,) = bench.stability([{**scaled, "best_step_ms": 13.0}], [scaled]).to_dict("records")
    assert step["change"] == pytest.approx(0.3) and step["step_change"] is None


def test_against_reads_the_last_of_each_measurement_and_names_a_missing_folder(tmp_path):
    rows = [_overhead_row("torch", 1.3), _overhead_row("torch", 1.0)]
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["ratio"] for r in bench.read_rows(tmp_path)] == [1.0]
    assert main(["bench", "overhead", "--against", str(tmp_path / "nope")]) == 2


def test_the_progress_line_shows_the_figures_and_leaves_the_turns_to_the_file(
    monkeypatch, tmp_path, capsys
):
    _fake(monkeypatch, [0.01, 0.02], matmul=[3e11, 1e11, 1e11])
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("lenet", 64),))
    args = ["bench", "roofline", "--frameworks", "jax", "--modes", "graph", "--out", str(tmp_path)]
    assert main(args) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "fraction" in x)
    assert "matmul_gflops_by_n" in line and "turns" not in line and "_rounds" not in line
    (row,) = bench.read_rows(tmp_path)
    assert len(row["turns"]) == bench.ROUNDS  # the CLI's default rounds, each one's turns kept


def test_a_bare_bench_takes_one_process_per_measurement_and_thorough_takes_rounds(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(plan, "ROOFLINE_CASES", (("lenet", 64),))
    args = ["bench", "roofline", "--frameworks", "jax", "--modes", "graph", "--quiet"]
    # settled from the start: the thorough setting stops at its first rounds
    for extra, rounds in (
        ([], 1),
        (["--thorough"], bench.THOROUGH_ROUNDS),
        (["--thorough", "--rounds", "2"], 2),
        (["--rounds", "3"], 3),
    ):
        taken: list = []
        _fake(monkeypatch, [0.01, 0.01], matmul=[2e11] * 3, taken=taken)
        out = tmp_path / str(len(extra)) / str(rounds)
        assert main(args + extra + ["--out", str(out)]) == 0
        assert [r for _, _, r in taken] == list(range(rounds)), extra
    assert bench.rounds_for(True, None, None) == (bench.THOROUGH_ROUNDS, bench.THOROUGH_MAX_ROUNDS)
    assert bench.rounds_for(False, 2, None) == (2, 2) and bench.rounds_for(False, 3, 1) == (3, 3)


def test_one_round_tables_show_the_spread_over_turns(monkeypatch, tmp_path):
    _fake(monkeypatch, [0.011, 0.012], [0.010, 0.010])
    rows = bench.run_bench(["overhead"], ["torch"], ["eager"], tmp_path, rounds=1, max_rounds=1)
    table = bench.tables(rows)["overhead"]
    assert "turn_spread" in table and "spread" not in table and "rounds" not in table
    md = bench.write_markdown(rows, tmp_path, "rosetta bench").read_text()
    assert "one process per measurement" in md and "--thorough" in md
    rows = bench.run_bench(["overhead"], ["torch"], ["eager"], tmp_path, rounds=2, max_rounds=2)
    table = bench.tables(rows)["overhead"]
    assert "spread" in table and "turn_spread" not in table and "rounds" in table

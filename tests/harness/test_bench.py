"""rosetta bench without a framework: its specs, ratios, tables and report."""

from __future__ import annotations

import json

import pytest

from harness import bench
from harness.cli import main


def test_bench_spec_sets_batch_and_enough_steps():
    spec = bench.bench_spec("mlp", 256)
    assert spec.recipe.batch_size == 256 and spec.recipe.target is None
    per_epoch = 1437 // 256  # digits28 keeps 1437 training samples
    assert spec.recipe.epochs * per_epoch >= bench.MIN_STEPS
    assert spec.recipe.eval_every == spec.recipe.epochs  # one evaluation, at the end
    assert bench.bench_spec("lenet", 64).model == bench.resolve_task("lenet").model
    with pytest.raises(ValueError, match="larger than"):
        bench.bench_spec("lenet", 4096)


def test_overhead_ratio_is_harness_over_minimal(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "harness_cell", lambda m, out, *a, **k: {
        "status": "ok", "step_median_s": 0.011})  # fmt: skip
    monkeypatch.setattr(bench, "minimal_loop", lambda m, out, **k: {"step_median_s": 0.010})
    rows = bench.run_bench(["overhead"], ["torch"], ["eager"], tmp_path)
    assert [r["ratio"] for r in rows] == pytest.approx([1.1, 1.1])
    assert len((tmp_path / "bench.jsonl").read_text().splitlines()) == 2


def test_roofline_fraction_uses_spec_flops_and_same_process_matmul(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "harness_cell", lambda m, out, *a, **k: {
        "status": "ok", "step_median_s": 0.01, "matmul_flops": 2e11})  # fmt: skip
    monkeypatch.setattr(bench, "ROOFLINE_CASES", (("lenet", 64),))
    (row,) = bench.run_bench(["roofline"], ["jax"], ["graph"], tmp_path)
    flops = 64 * (2 * 288_000 + 3 * (934_400 - 288_000))  # see test_flops.py
    assert row["achieved_gflops"] == pytest.approx(flops / 0.01 / 1e9)
    assert row["fraction"] == pytest.approx(flops / 0.01 / 2e11)


def test_a_failed_measurement_keeps_its_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "harness_cell", lambda m, out, *a, **k: {
        "status": "failed", "error": "boom"})  # fmt: skip
    monkeypatch.setattr(bench, "minimal_loop", lambda m, out, **k: {"error": "crashed"})
    rows = bench.run_bench(["overhead"], ["tf"], ["graph"], tmp_path)
    assert rows[0]["ratio"] is None and rows[0]["error"] == "boom"


def test_markdown_has_every_table_and_the_scaling_figure(tmp_path):
    rows = [
        {"benchmark": "overhead", "task": "mlp", "batch": 128, "framework": "torch",
         "mode": "eager", "threads": 0, "minimal_mode": "eager", "harness_ms": 1.1, "minimal_ms": 1.0, "ratio": 1.1},
        {"benchmark": "roofline", "task": "mlp", "batch": 256, "framework": "torch",
         "mode": "graph", "threads": 0, "step_ms": 9.0, "achieved_gflops": 98.0,
         "matmul_gflops": 196.0, "fraction": 0.5},
    ] + [
        {"benchmark": "scaling", "task": "mlp", "batch": b, "framework": fw, "mode": "graph",
         "threads": 0, "step_ms": b / 50, "samples_per_s": 50_000.0, "achieved_gflops": 80.0}
        for b in (32, 64) for fw in ("torch", "jax")
    ]  # fmt: skip
    md = bench.write_markdown(rows, tmp_path, "rosetta bench").read_text()
    for name in ("## overhead", "## roofline", "## scaling", "![scaling](scaling.png)"):
        assert name in md
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_bench_rejects_unknown_names(capsys):
    assert main(["bench", "speed"]) == 2
    assert "unknown benchmark 'speed'" in capsys.readouterr().err
    assert main(["bench", "--frameworks", "mxnet"]) == 2


def test_rows_are_json(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "harness_cell", lambda m, out, *a, **k: {"status": "ok"})
    bench.run_bench(["scaling"], ["torch"], ["eager"], tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in rows] == list(bench.SCALING_BATCHES)


def _timed(monkeypatch, harness_s: float, minimal_s: float) -> list[str]:
    """Fake cells and minimal loops of these step times; the minimal modes run."""
    seen: list[str] = []
    monkeypatch.setattr(bench, "harness_cell", lambda m, out, *a, **k: {
        "status": "ok", "step_median_s": harness_s})  # fmt: skip
    monkeypatch.setattr(bench, "minimal_loop", lambda m, out, **k: seen.append(m.mode) or {
        "step_median_s": minimal_s})  # fmt: skip
    return seen


def test_keras_fit_is_compared_with_the_harness_graph_step(monkeypatch, tmp_path):
    seen = _timed(monkeypatch, 0.002, 0.004)
    rows = bench.run_bench(["overhead"], ["tf"], ["graph"], tmp_path)
    assert seen == ["graph", "fit"] * 2
    fit = [r for r in rows if r["minimal_mode"] == "fit"]
    assert len(fit) == 2 and fit[0]["mode"] == "graph" and fit[0]["ratio"] == pytest.approx(0.5)


def test_jax_graph_is_compared_with_both_the_nnx_and_the_functional_loop(monkeypatch, tmp_path):
    seen = _timed(monkeypatch, 0.002, 0.002)
    rows = bench.run_bench(["overhead"], ["jax"], ["eager", "graph"], tmp_path)
    assert seen == ["eager", "graph", "functional"] * 2
    assert {(r["mode"], r["minimal_mode"]) for r in rows} == {
        ("eager", "eager"),
        ("graph", "graph"),
        ("graph", "functional"),
    }


def _overhead_row(framework: str, ratio: float | None, mode: str = "graph") -> dict:
    return {"benchmark": "overhead", "task": "mlp", "batch": 128, "framework": framework,
            "mode": mode, "threads": 0, "minimal_mode": mode, "harness_ms": 1.0,
            "minimal_ms": 1.0, "ratio": ratio}  # fmt: skip


def test_stability_compares_each_ratio_with_the_same_measurement_before(tmp_path):
    before = [_overhead_row("torch", 1.00), _overhead_row("tf", 1.00), _overhead_row("jax", 0.9)]
    now = [_overhead_row("torch", 1.05), _overhead_row("tf", 1.20), _overhead_row("jax", None),
           _overhead_row("torch", 1.0, mode="eager")]  # fmt: skip
    df = bench.stability(now, before)
    assert df["change"].tolist()[:2] == pytest.approx([0.05, 0.20])
    assert df["stable"].tolist() == [True, False, None, None]  # no figure, or none before
    path = bench.write_markdown(now, tmp_path, "rosetta bench --against x", df)
    assert "## stability" in path.read_text() and "1 of 4 are stable" in path.read_text()


def test_against_reads_the_last_of_each_measurement_and_names_a_missing_folder(tmp_path):
    rows = [_overhead_row("torch", 1.3), _overhead_row("torch", 1.0)]
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["ratio"] for r in bench.read_rows(tmp_path)] == [1.0]
    assert main(["bench", "overhead", "--against", str(tmp_path / "nope")]) == 2


def test_rounds_alternate_the_loops_and_take_the_median_of_each_pairs_ratio(monkeypatch, tmp_path):
    order: list[str] = []
    speed = iter([1.0, 1.0, 2.0, 2.0, 1.5, 1.5])  # the machine slows between rounds

    def cell(m, out, *a, round_=0, **k):
        order.append(f"h{round_}")
        return {"status": "ok", "step_median_s": 0.0105 * next(speed)}

    def loop(m, out, round_=0, **k):
        order.append(f"m{round_}")
        return {"step_median_s": 0.010 * next(speed)}

    monkeypatch.setattr(bench, "harness_cell", cell)
    monkeypatch.setattr(bench, "minimal_loop", loop)
    monkeypatch.setattr(bench, "OVERHEAD_CASES", (("mlp", 128),))
    (row,) = bench.run_bench(["overhead"], ["torch"], ["eager"], tmp_path, rounds=3)
    assert order == ["h0", "m0", "m1", "h1", "h2", "m2"]
    # each pair ran at one speed: every round's ratio is 1.05, though the speed doubled
    assert row["ratios"] == pytest.approx([1.05] * 3) and row["ratio"] == pytest.approx(1.05)
    assert row["rounds"] == 3 and row["spread"] == pytest.approx(0, abs=1e-12)
    assert row["harness_ms"] == pytest.approx(10.5 * 1.5)  # the median round's


def test_roofline_rounds_take_the_median_fraction_and_keep_a_failed_rounds_reason(
    monkeypatch, tmp_path
):
    records = iter([
        {"status": "ok", "step_median_s": 0.01, "matmul_flops": 2e11},
        {"status": "failed", "error": "boom"},
        {"status": "ok", "step_median_s": 0.02, "matmul_flops": 2e11},
    ])  # fmt: skip
    monkeypatch.setattr(bench, "harness_cell", lambda m, out, *a, **k: next(records))
    monkeypatch.setattr(bench, "ROOFLINE_CASES", (("mlp", 256),))
    (row,) = bench.run_bench(["roofline"], ["torch"], ["graph"], tmp_path, rounds=3)
    assert row["rounds"] == 2 and row["error"] == "boom"
    assert row["fraction"] == pytest.approx(sum(row["fractions"]) / 2)
    assert row["fractions"][0] == pytest.approx(2 * row["fractions"][1])
    assert row["spread"] == pytest.approx(0.5 / 0.75)
    md = bench.write_markdown([row], tmp_path, "rosetta bench --rounds 3").read_text()
    assert "median of 2 rounds" in md and "spread" in md


def test_rounds_must_be_positive(tmp_path, capsys):
    with pytest.raises(bench.UsageError, match="rounds"):
        bench.run_bench(["overhead"], ["torch"], ["eager"], tmp_path, rounds=0)
    assert main(["bench", "overhead", "--rounds", "0", "--out", str(tmp_path)]) == 2
    assert "--rounds must be 1 or more" in capsys.readouterr().err

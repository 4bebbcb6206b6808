"""The bench's tables, where each mode becomes compute-bound, and bench.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.bench.against import STABLE_WITHIN, held
from harness.bench.plan import BLOCK_STEPS, BLOCKS, MATMUL_SIZES, SETTLED_WITHIN, TURN_S
from harness.paired import MIN_BLOCK

HALF = 0.5  # a step at half its own matmul's FLOP/s or more counts as compute-bound


def half_ceiling(rows: list[dict[str, Any]], benchmark: str) -> pd.DataFrame:
    """Where each framework and mode becomes compute-bound on the MLP, in one
    benchmark's rows (the roofline's or the scaling's): the smallest batch measured
    from which every larger batch's step also reaches ``HALF`` of its matmul ceiling
    (missing where the largest batch's does not), and the best fraction measured."""

    mlp = [
        r
        for r in rows
        if r["benchmark"] == benchmark and r["task"] == "mlp" and r.get("fraction") is not None
    ]
    if not mlp:
        return pd.DataFrame()
    out = []
    for (fw, mode), part in pd.DataFrame(mlp).groupby(["framework", "mode"], sort=False):
        part = part.sort_values("batch")
        below = part["batch"][part["fraction"] < HALF]
        reached = part["batch"][part["batch"] > below.max()] if len(below) else part["batch"]
        best = part.loc[part["fraction"].idxmax()]
        out.append(
            {
                "framework": fw,
                "mode": mode,
                "half_from_batch": reached.min() if len(reached) else None,
                "batches": f"{part['batch'].min()}-{part['batch'].max()}",
                "best_fraction": best["fraction"],
                "at_batch": best["batch"],
            }
        )
    return pd.DataFrame(out).astype({"half_from_batch": "Int64", "at_batch": "Int64"})


# each benchmark's table: its columns, in order (_hidden leaves some out)
COLUMNS = {
    "overhead": (
        "task batch framework mode minimal_mode harness_ms minimal_ms ratio spread "
        "turn_spread rounds"
    ).split(),
    "roofline": (
        "task batch framework mode step_ms best_step_ms achieved_gflops best_matmul_gflops "
        "fraction fraction_median spread turn_spread rounds read_gbps"
    ).split(),
    "scaling": (
        "batch framework mode best_step_ms samples_per_s step_ms achieved_gflops "
        "best_matmul_gflops fraction spread turn_spread rounds read_gbps"
    ).split(),
}


def tables(rows: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """One DataFrame per benchmark, numbers rounded for reading."""
    df = pd.DataFrame(rows)
    out = {}
    for name, columns in COLUMNS.items():
        part = df[df["benchmark"] == name] if not df.empty else df
        if not part.empty:
            shown = [c for c in columns if c in part and not _hidden(part, c)]
            out[name] = part[shown].round(3).reset_index(drop=True)
    return out


def _hidden(part: pd.DataFrame, column: str) -> bool:
    """A column a table leaves out: a spread over rounds where each took one, the
    spread over turns where the rounds give one, the rounds where all took one."""
    one_round = part["spread"].isna().all() if "spread" in part else True
    if column == "spread":
        return one_round
    if column == "turn_spread":
        return not one_round or part[column].isna().all()
    return column == "rounds" and bool((part[column] == 1).all())


def _notes() -> dict[str, str]:
    """What each benchmark's table shows, below it."""
    return {
        "overhead": "ratio: the harness's median step over the minimal loop's (same model, "
        "batch, optimizer and threads), the two taking turns of "
        f"up to {BLOCK_STEPS} steps (as many as the harness's step fits in {TURN_S} s, "
        f"at least {MIN_BLOCK}) in "
        f"one process, {BLOCKS} turns each: the median over the "
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


def _rounds_note(rows: list[dict[str, Any]]) -> list[str]:
    """How a figure is made: from one process per measurement, or from several rounds."""
    if not any((r.get("rounds") or 1) > 1 for r in rows):
        return [
            "Each figure comes from one process per measurement; turn_spread is "
            "(max - min) / median over its turns' figures in that process (the overhead's "
            "turn-pair ratios, the roofline's turn fractions, the scaling's turn step "
            "times). --thorough takes every measurement in several processes.",
            "",
        ]
    return [
        "Each figure is the median over its rounds (rounds: how many), each round a "
        "fresh process, except the fraction and the best_ figures, taken over all the "
        "rounds' turns; spread is "
        "(max - min) / median over the rounds' figures. A measurement whose rounds' "
        f"median had a standard error (1.25 s / sqrt(n)) above {SETTLED_WITHIN:.0%} of "
        "it after --rounds took further rounds, up to --max-rounds.",
        "",
    ]


def _benchmark_sections(rows: list[dict[str, Any]]) -> list[str]:
    """Each benchmark's table and note, and where the MLP reaches half its ceiling."""
    from harness.report.render import markdown_table

    parts: list[str] = []
    notes = _notes()
    for name, df in tables(rows).items():
        parts += [f"## {name}", "", markdown_table(df), "", notes[name], ""]
        half = half_ceiling(rows, name)
        if not half.empty:
            parts += [
                markdown_table(half.round(3)),
                "",
                f"half_from_batch: the smallest batch from which the MLP's step reaches "
                f"{HALF:.0%} of its mode's matmul ceiling at every larger batch measured too "
                "(-: not even at the largest); best_fraction: the highest fraction, at at_batch.",
                "",
            ]
    return parts


def _stability_section(stable: pd.DataFrame | None) -> list[str]:
    """Each figure against an earlier invocation's (--against), where one was given."""
    from harness.report.render import markdown_table

    if stable is None or stable.empty:
        return []
    shown = stable.drop(columns="minimal_mode" if (stable["minimal_mode"] == "").all() else [])
    return [
        "## stability",
        "",
        markdown_table(shown.round(4)),
        "",
        f"Each figure against the same measurement's in an earlier invocation (--against): "
        f"change is now / before - 1; stable when within {STABLE_WITHIN:.0%}. "
        "step_change, matmul_change and read_change (roofline and scaling): the same of "
        "the step time (a scaling figure's own), the matmul ceiling and the memory "
        "reading, to tell which moved. "
        f"{held(stable)}.",
        "",
    ]


def write_markdown(
    rows: list[dict[str, Any]], out: Path, command: str, stable: pd.DataFrame | None = None
) -> Path:
    """``out/bench.md``: the tables with their notes, the scaling figure (written
    beside it as scaling.png) and, given ``stable``, the comparison with before."""
    from harness.report.plots import png, scaling_figure

    parts = ["# Rosetta bench", "", f"`{command}`", ""]
    parts += _rounds_note(rows)
    parts += _benchmark_sections(rows)
    scaling_rows = [r for r in rows if r["benchmark"] == "scaling"]
    if scaling_rows:
        fig = scaling_figure(pd.DataFrame(scaling_rows), HALF)
        (out / "scaling.png").write_bytes(png(fig))
        parts += ["![scaling](scaling.png)", ""]
    parts += _stability_section(stable)
    path = out / "bench.md"
    path.write_text("\n".join(parts))
    return path

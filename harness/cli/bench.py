"""``rosetta bench``: the harness against the limits (overhead, roofline, scaling)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from harness.backend import BACKENDS, MODES
from harness.bench import (
    BENCHMARKS,
    ROUNDS,
    SETTLED_WITHIN,
    THOROUGH_MAX_ROUNDS,
    THOROUGH_ROUNDS,
)
from harness.bench import TASKS as BENCH_TASKS
from harness.cli.common import MODES_HELP, add_frameworks, csv


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="the harness against the limits: overhead vs a hand-written loop, roofline, scaling",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument(
        "benchmarks", nargs="*", default=list(BENCHMARKS), help="which: " + ", ".join(BENCHMARKS)
    )
    add_frameworks(b, list(BACKENDS), "comma-separated")
    b.add_argument("--modes", type=csv, default=list(MODES), help=MODES_HELP)
    b.add_argument(
        "--threads", type=int, default=0, help="intra-op threads per process (0: default)"
    )
    b.add_argument(
        "--thorough",
        action="store_true",
        help=f"take every measurement in {THOROUGH_ROUNDS} fresh processes, and in more "
        f"(up to {THOROUGH_MAX_ROUNDS}) while its median is unsettled: about six times "
        "the default's processes, one per measurement",
    )
    b.add_argument(
        "--rounds",
        type=int,
        default=argparse.SUPPRESS,
        help="take every measurement in this many fresh processes, one pass over all "
        "measurements per round, and report the median and the spread (the roofline's "
        "and scaling's figures: the fastest block over all rounds) "
        f"(default: {ROUNDS}, {THOROUGH_ROUNDS} with --thorough)",
    )
    b.add_argument(
        "--max-rounds",
        type=int,
        default=argparse.SUPPRESS,
        help="after --rounds, take further rounds (passes over the measurements still "
        f"unsettled: their median's standard error above {100 * SETTLED_WITHIN:.0f}%% of it) "
        f"up to this many in all (default: --rounds, {THOROUGH_MAX_ROUNDS} with --thorough)",
    )
    b.add_argument(
        "--tasks",
        type=csv,
        default=list(BENCH_TASKS),
        help="comma-separated, of: " + ", ".join(BENCH_TASKS) + " (scaling: the MLP only)",
    )
    b.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="1 only: the bench's ratios need the whole machine for each process",
    )
    b.add_argument("--out", help="write bench.jsonl and bench.md here instead of results/<id>/")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument(
        "--against",
        metavar="DIR",
        help="an earlier bench's folder: print how much each ratio moved since, and whether "
        "it held within 10%%",
    )


def _say(row: dict) -> None:
    """A finished measurement's row, as it comes (turns stay in bench.jsonl)."""
    from harness.lessons import show_value

    hidden = ("benchmark", "threads", "turns")
    shown = {
        k: v
        for k, v in row.items()
        if v is not None and k not in hidden and not k.endswith("_rounds")
    }
    print("  " + ", ".join(f"{k} {show_value(v)}" for k, v in shown.items()), flush=True)


def cmd(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.bench import read_rows, rounds_for, run_bench, validate_bench
    from harness.results import ResultStore

    rounds, max_rounds = rounds_for(
        args.thorough, getattr(args, "rounds", None), getattr(args, "max_rounds", None)
    )
    validate_bench(args.benchmarks, args.frameworks, args.modes, rounds, args.tasks, args.jobs)
    earlier = read_rows(Path(args.against)) if args.against else None
    store = ResultStore(args.out)
    print(f"rosetta bench: {', '.join(args.benchmarks)}; results in {store.dir}/", flush=True)
    try:
        rows = run_bench(
            args.benchmarks,
            args.frameworks,
            args.modes,
            store.dir,
            args.threads,
            _say,
            rounds,
            progress=not args.quiet,
            max_rounds=max_rounds,
            tasks=args.tasks,
        )
        return _show(args, argv, rows, earlier, store.dir)
    finally:
        store.close()


def _show(args, argv, rows: list[dict], earlier, out: Path) -> int:
    from harness.bench import HALF, half_ceiling, held, stability, tables, write_markdown

    for name, df in tables(rows).items():
        print(f"\n{name}\n{df.to_string(index=False)}")
        half = half_ceiling(rows, name)
        if not half.empty:
            print(
                f"\n{name}: the MLP's step at {HALF:.0%} of its matmul ceiling or more "
                f"from half_from_batch on\n{half.round(3).to_string(index=False)}"
            )
    stable = None if earlier is None else stability(rows, earlier)
    if stable is not None:
        print(
            f"\nstability against {args.against}: {held(stable)}\n"
            f"{stable.round(4).to_string(index=False)}"
        )
    path = write_markdown(rows, out, shlex.join(["rosetta", *argv]), stable)
    print(f"\nbench: {out / 'bench.jsonl'}\n       {path}")
    return 0

"""``rosetta check``: the frameworks compute the same function."""

from __future__ import annotations

import argparse

from harness.cli.common import MODES_HELP, add_frameworks, add_tasks, csv
from harness.executors.local import usable_cores


def add_parser(sub) -> None:
    c = sub.add_parser(
        "check",
        help="prove the frameworks compute the same function: forward, loss, gradients, steps",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_tasks(c)
    add_frameworks(c, help="comma-separated (default: every installed one)")
    c.add_argument("--modes", type=csv, default=["eager", "graph"], help=MODES_HELP)
    c.add_argument(
        "--dtype",
        type=csv,
        default=["float64", "float32"],
        help="float64 (differences are rounding only) and/or float32",
    )
    c.add_argument("--steps", type=int, default=10, help="optimizer steps compared one by one")
    c.add_argument(
        "--data-dir",
        "--data-file",
        dest="data_dir",
        help="check on the real data files (a folder, or a text file) instead of embedded data",
    )
    c.add_argument("--out", help="write equivalence.jsonl here instead of results/<run-id>/")
    c.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="go on with the check in RUN_DIR: keep the traces it made for the same tasks, "
        "steps and versions, trace the rest, compare everything again",
    )
    c.add_argument(
        "--jobs",
        type=int,
        default=len(usable_cores()),
        help="check processes at once, each on its own cores (the check times nothing)",
    )
    c.add_argument("--quiet", action="store_true", help="no progress")


def cmd(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.api import select_specs
    from harness.check import check_table, plan_check, run_check
    from harness.results import ResultStore
    from harness.validate import run_folder

    out = run_folder(args.out, args.resume)
    specs = select_specs(args.tasks, args.spec)
    backends = plan_check(
        specs, args.frameworks, args.modes, args.dtype, args.steps, args.jobs, args.data_dir
    )
    store = ResultStore(out, resume=bool(args.resume))
    print(
        f"rosetta check: {len(specs)} tasks x {', '.join(backends)}; results in {store.dir}/",
        flush=True,
    )
    try:
        records = run_check(
            specs,
            backends,
            args.modes,
            args.dtype,
            args.steps,
            store.dir,
            data_dir=args.data_dir,
            progress=not args.quiet,
            jobs=args.jobs,
            resume=bool(args.resume),
        )
    finally:
        store.close()
    print()
    print(check_table(records))
    bad = [r for r in records if r["status"] != "pass"]
    print(f"\n{len(records) - len(bad)} passed, {len(bad)} failed")
    print(f"records: {store.dir / 'equivalence.jsonl'}")
    return 1 if bad else 0

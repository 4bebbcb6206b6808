"""``rosetta run``: the matrix task x framework x mode x device, as a campaign."""

from __future__ import annotations

import argparse
import shlex

from harness.backend import BACKENDS
from harness.cli.common import MODES_HELP, add_executor, add_frameworks, add_tasks, csv, ints

# the run options that select the matrix, as harness.api names them -> their dests here
SELECTION = {
    "tasks": "tasks",
    "spec_files": "spec",
    "frameworks": "frameworks",
    "modes": "modes",
    "devices": "devices",
    "data_dir": "data_dir",
    "init": "init",
    "threads": "threads",
    "timeout_s": "timeout",
    "epochs": "epochs",
    "repeats": "repeats",
    "strict_data": "strict_data",
}


def add_parser(sub) -> None:
    r = sub.add_parser(
        "run",
        help="run the matrix task x framework x mode x device",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_tasks(r)
    add_frameworks(r, list(BACKENDS), f"comma-separated, of: {', '.join(BACKENDS)}")
    r.add_argument("--modes", type=csv, default=["eager", "graph"], help=MODES_HELP)
    r.add_argument(
        "--devices", type=csv, default=["cpu"], help="comma-separated, of: cpu, gpu, auto"
    )
    r.add_argument(
        "--data-dir",
        "--data-file",
        dest="data_dir",
        help="folder of real data files (MNIST IDX, diabetes.csv.gz, the names files), or "
        "for char_lstm a UTF-8 text file: runs each task on its file-backed data set "
        "instead of the embedded one",
    )
    r.add_argument(
        "--init",
        choices=["shared", "native"],
        default="shared",
        help="shared: the same numpy-drawn start in every framework; "
        "native: each framework's own default initializers",
    )
    r.add_argument(
        "--threads",
        type=ints,
        default=[0],
        help="intra-op threads per cell, set before import (0: framework default); "
        "several, comma-separated, sweep them (e.g. 1,2)",
    )
    r.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run each cell this many times, each in a fresh process; the report gives "
        "the spread of their median step times",
    )
    r.add_argument("--epochs", type=int, help="override every task's epochs (quick looks)")
    r.add_argument("--timeout", type=float, default=900.0, help="seconds per cell")
    _add_campaign(r)


def _add_campaign(r) -> None:
    """Where a run writes, how it resumes, where its cells run."""
    r.add_argument(
        "--strict-data",
        action="store_true",
        help="refuse a data file under a known name whose checksum is not the published one "
        "(by default it is used as your own data set, and the records say so)",
    )
    r.add_argument("--out", help="write records here instead of results/<run-id>/")
    r.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="go on with the run in RUN_DIR (a killed one, say), with its options: run only "
        "the cells that have no record there yet",
    )
    r.add_argument(
        "--rerun",
        choices=["none", "failed"],
        default="none",
        help="with --resume, failed: also rerun the cells that failed, timed out or diverged",
    )
    add_executor(
        r,
        jobs_help="cells run at once on this machine, each slot on its own "
        "cores (its threads: its share); timed cells then share memory bandwidth, "
        "and the report marks them",
    )
    r.add_argument("--quiet", action="store_true", help="no progress")


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options a command line sets itself (not left at their defaults)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for a in sub._actions:
                    a.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def cmd(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.api import start
    from harness.cli import parser
    from harness.report import write_report
    from harness.report.tables import latest_per_cell
    from harness.results import table
    from harness.validate import UsageError, run_folder

    selection = {name: getattr(args, dest) for name, dest in SELECTION.items()}
    out = run_folder(args.out, args.resume)
    if args.resume:
        given = given_options(parser(), argv)
        selection = {k: v for k, v in selection.items() if SELECTION[k] in given}
    elif args.rerun != "none":
        raise UsageError("--rerun goes with --resume RUN_DIR")
    campaign = start(
        out,
        args.jobs,
        args.executor,
        args.address,
        resume=bool(args.resume),
        command=shlex.join(["rosetta", *argv]),
        **selection,
    )
    try:
        where = f"{campaign.executor.slots} slot(s)" if args.executor == "local" else "ray"
        print(
            f"rosetta: {len(campaign.matrix)} cells on {where}, results in {campaign.store.dir}/",
            flush=True,
        )
        records = campaign.run(progress=not args.quiet, rerun=args.rerun)
    finally:
        campaign.close()
    store = campaign.store
    print()
    print(table(latest_per_cell(store.records)[0]))
    paths = write_report(store.dir)
    print(f"\nrecords: {store.records_path}\nsummary: {store.summary_path}")
    print(f"report:  {paths['html']}\n         {paths['md']}")
    bad = [r for r in records if r["status"] not in ("ok", "unavailable")]
    return 1 if bad else 0

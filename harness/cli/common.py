"""What the subcommands' parsers share: list types, and the options several take."""

from __future__ import annotations

import argparse

from harness.backend import MODES
from harness.executors import EXECUTORS
from harness.spec import DEFAULT_TASKS

# the --modes option's help, for run, check and bench alike
MODES_HELP = (
    f"comma-separated, of: {', '.join(MODES)} (xla is TensorFlow's tf.function(jit_compile=True))"
)
FRAMEWORKS_HELP = "comma-separated (default: all; one not installed shows how to install it)"


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def ints(text: str) -> list[int]:
    try:
        return [int(part) for part in csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers, not {text!r}"
        ) from None


def add_tasks(p: argparse.ArgumentParser) -> None:
    """The --tasks and --spec options of run and check."""
    p.add_argument(
        "--tasks",
        type=csv,
        default=[],
        help="built-in task names or task files, comma-separated, or 'all' for every built-in "
        "task; none named: " + ", ".join(DEFAULT_TASKS) + " (marked * in rosetta list)",
    )
    p.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="FILE",
        help="a task file of your own (repeatable)",
    )


def add_frameworks(p: argparse.ArgumentParser, default=None, help: str = FRAMEWORKS_HELP) -> None:
    p.add_argument("--frameworks", type=csv, default=default, help=help)


def add_executor(p: argparse.ArgumentParser, jobs_help: str) -> None:
    """Where the cells run: --jobs local slots, or --executor ray at --address."""
    p.add_argument("--jobs", type=int, default=1, help=jobs_help)
    p.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        default="local",
        help="local: this machine's --jobs slots; ray: each cell a Ray task on an existing "
        "cluster (see README: ray start, and a rosetta_slot resource per node)",
    )
    p.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="with --executor ray: the cluster's head (default: auto, the cluster this "
        "machine belongs to)",
    )

"""``rosetta``: parse the command line, call the harness, print. Each subcommand's
parser and call live in one module here; the work is done in ``harness``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.cli import bench, check, course, report, run

EPILOG = """examples:
  rosetta list
  rosetta run                                        # the default tasks x framework x mode
  rosetta run --tasks lenet,softmax_mlp --frameworks torch,jax --modes eager,graph
  rosetta run --tasks lenet --data-dir ../shared/data/mnist
  rosetta run --spec my_task.toml
  rosetta run --tasks all --jobs 2                   # two cells at once, each on its own cores
  rosetta run --resume results/<run-id>              # go on with a killed run
  rosetta check                                      # the frameworks compute the same function
  rosetta check --tasks lenet --steps 20 --dtype float64
  rosetta report results/<run-id>                    # report.html, report.md, report.csv
  rosetta lesson autograd                            # the notes' autograd example, side by side
  rosetta explain lenet                              # the model in each framework, side by side
  rosetta docs --check                               # the lessons cite the reference run
  rosetta reference                                  # regenerate results/reference/ (~1 h)
"""

# subcommand -> (adds its parser, runs it), in the order --help lists them
COMMANDS = {
    "list": (course.add_list_parser, course.cmd_list),
    "run": (run.add_parser, run.cmd),
    "check": (check.add_parser, check.cmd),
    "bench": (bench.add_parser, bench.cmd),
    "report": (report.add_parser, report.cmd),
    "lesson": (course.add_lesson_parser, course.cmd_lesson),
    "explain": (course.add_explain_parser, course.cmd_explain),
    "docs": (report.add_docs_parser, report.cmd_docs),
    "reference": (report.add_reference_parser, report.cmd_reference),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rosetta",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one deep-learning task in PyTorch, TensorFlow/Keras and JAX and compare.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from harness.data import DataError
    from harness.report.docs import DocsError
    from harness.results import RunDirError
    from harness.spec import SpecError
    from harness.validate import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args, argv)
    except (SpecError, DataError, UsageError, DocsError, RunDirError) as err:
        # user errors: one clear message, no traceback
        print(f"rosetta: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rosetta: interrupted; the records written so far are kept", file=sys.stderr)
        return 130

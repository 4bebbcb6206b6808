"""``rosetta report``, ``rosetta docs`` and ``rosetta reference``: a run folder's reports,
the lesson pages' numbers, and the reference run they cite."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_parser(sub) -> None:
    rp = sub.add_parser(
        "report",
        help="write a run folder's report: report.html, report.md (+ figures/), report.csv",
        description="Turn a run folder into reports: report.html (one self-contained page, "
        "figures inlined), report.md with its PNG figures in figures/, and report.csv (the "
        "summary table). Uses the folder's equivalence.jsonl (from `rosetta check --out "
        "RUN_DIR`) and run.json when present. `rosetta run` writes these reports itself; "
        "this command redraws them.",
    )
    rp.add_argument(
        "run_dir", metavar="RUN_DIR", help="a folder written by `rosetta run` (results/<run-id>/)"
    )


def add_docs_parser(sub) -> None:
    d = sub.add_parser(
        "docs",
        help="rewrite the lesson pages' numbers and generated blocks from the reference run",
        description="The lesson pages in docs/ cite the reference run (results/reference/) "
        "with markers: VALUE<!--ref KEY FORMAT--> and <!-- begin KIND ARGS --> ... "
        "<!-- end --> blocks (see harness/report/docs.py). This command rewrites them "
        "from the reference run; --check only lists what is stale or uncited.",
    )
    d.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    d.add_argument(
        "--reference", metavar="DIR", help="a reference run folder (default results/reference)"
    )


def add_reference_parser(sub) -> None:
    rf = sub.add_parser(
        "reference",
        help="regenerate the reference run the lessons cite: run, check, lessons, report, docs",
        description="Regenerate the committed reference run in one go: every built-in "
        "task in every installed framework (rosetta run --tasks all), the equivalence "
        "check of every task (rosetta check --tasks all), every lesson, the report, and "
        "the lesson pages' numbers (rosetta docs). About an hour on a 2-core CPU: run "
        "it on a quiet machine, since its timings are the ones the lessons quote.",
    )
    rf.add_argument(
        "--out", metavar="DIR", help="the folder (default results/reference); emptied first"
    )
    rf.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.report import write_report
    from harness.validate import UsageError

    run_dir = Path(args.run_dir)
    if not (run_dir / "records.jsonl").is_file():
        what = "is not a folder" if not run_dir.is_dir() else "has no records.jsonl"
        raise UsageError(
            f"{run_dir} {what}: give a folder written by `rosetta run` (results/<run-id>/)"
        )
    paths = write_report(run_dir)
    print(f"report: {paths['html']}\n        {paths['md']} (figures in {paths['figures']}/)")
    print(f"        {paths['csv']}")
    return 0


def cmd_docs(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.report.docs import REFERENCE_DIR, Reference, pages, problems, refresh

    ref = Reference.load(args.reference or REFERENCE_DIR)
    found = pages()
    if not args.check:
        for page in found:
            text = page.read_text()
            fresh = refresh(text, ref, page.parent, errors=[])  # problems() names them
            if fresh != text:
                page.write_text(fresh)
                print(f"rewrote {page}")
    bad = [line for page in found for line in problems(page, ref)]
    print("\n".join(bad) if bad else f"{len(found)} pages cite {ref.path}: up to date")
    return 1 if bad else 0


def cmd_reference(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.cli import main
    from harness.report import reference
    from harness.report.docs import REFERENCE_DIR

    out = Path(args.out or REFERENCE_DIR)
    reference.clear(out)
    steps = reference.steps(out, args.quiet)
    codes = []
    for step in steps:
        print(f"\n$ rosetta {shlex.join(step)}", flush=True)
        codes.append(main(step))  # each step exactly as typed, with its own checks
    bad = [s[0] for s, c in zip(steps, codes, strict=True) if c]
    print(f"\nreference run in {out}/" + (f"; not clean: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0

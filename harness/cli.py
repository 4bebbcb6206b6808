"""``rosetta``: parse, call harness functions, print. No logic lives here."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.backend import BACKENDS, MODES, missing_packages, package_version
from harness.bench import MAX_ROUNDS, ROUNDS, SETTLED_WITHIN
from harness.bench import TASKS as BENCH_TASKS
from harness.executors import EXECUTORS
from harness.executors.local import usable_cores
from harness.spec import DEFAULT_TASKS

EPILOG = """examples:
  rosetta list
  rosetta run                                        # the default tasks x framework x mode
  rosetta run --tasks lenet,softmax_mlp --frameworks torch,jax --modes eager,graph
  rosetta run --tasks lenet --data-dir ../shared/data/mnist
  rosetta run --spec my_task.toml
  rosetta check                                      # the frameworks compute the same function
  rosetta check --tasks lenet --steps 20 --dtype float64
  rosetta report results/<run-id>                    # report.html, report.md, report.csv
  rosetta lesson autograd                            # the notes' autograd example, side by side
  rosetta explain lenet                              # the model in each framework, side by side
  rosetta docs --check                               # the lessons cite the reference run
  rosetta reference                                  # regenerate results/reference/ (~1 h)
"""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers, not {text!r}"
        ) from None


# the --modes option's help, for run, check and bench alike
MODES_HELP = (
    f"comma-separated, of: {', '.join(MODES)} (xla is TensorFlow's tf.function(jit_compile=True))"
)


def _add_tasks(p: argparse.ArgumentParser) -> None:
    """The --tasks option that run and check share."""
    p.add_argument(
        "--tasks",
        type=_csv,
        default=[],
        help="built-in task names or task files, comma-separated, or 'all' for every built-in "
        "task; none named: " + ", ".join(DEFAULT_TASKS) + " (marked * in rosetta list)",
    )


def _add_executor(p: argparse.ArgumentParser, jobs_help: str) -> None:
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rosetta",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one deep-learning task in PyTorch, TensorFlow/Keras and JAX and compare.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="tasks, frameworks (installed or not, with versions), modes")
    r = sub.add_parser(
        "run",
        help="run the matrix task x framework x mode x device",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_tasks(r)
    r.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="FILE",
        help="a task file of your own (repeatable)",
    )
    r.add_argument(
        "--frameworks",
        type=_csv,
        default=list(BACKENDS),
        help=f"comma-separated, of: {', '.join(BACKENDS)}",
    )
    r.add_argument(
        "--modes",
        type=_csv,
        default=["eager", "graph"],
        help=MODES_HELP,
    )
    r.add_argument(
        "--devices", type=_csv, default=["cpu"], help="comma-separated, of: cpu, gpu, auto"
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
        type=_ints,
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
    _add_executor(r, jobs_help="cells run at once on this machine, each slot on its own "
                  "cores (its threads: its share); timed cells then share memory bandwidth, "
                  "and the report marks them")  # fmt: skip
    r.add_argument("--quiet", action="store_true", help="no progress")
    c = sub.add_parser(
        "check",
        help="prove the frameworks compute the same function: forward, loss, gradients, steps",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_tasks(c)
    c.add_argument("--spec", action="append", default=[], metavar="FILE", help="a task file")
    c.add_argument("--frameworks", type=_csv, help="comma-separated (default: every installed one)")
    c.add_argument("--modes", type=_csv, default=["eager", "graph"], help=MODES_HELP)
    c.add_argument(
        "--dtype",
        type=_csv,
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
    b = sub.add_parser(
        "bench",
        help="the harness against the limits: overhead vs a hand-written loop, roofline, scaling",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument(
        "benchmarks",
        nargs="*",
        default=["overhead", "roofline", "scaling"],
        help="which: overhead, roofline, scaling",
    )
    b.add_argument("--frameworks", type=_csv, default=list(BACKENDS), help="comma-separated")
    b.add_argument(
        "--modes",
        type=_csv,
        default=list(MODES),
        help=MODES_HELP,
    )
    b.add_argument(
        "--threads", type=int, default=0, help="intra-op threads per process (0: default)"
    )
    b.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="take every measurement in this many fresh processes, one pass over all "
        "measurements per round, and report the median and the spread (the roofline's "
        "and scaling's figures: the fastest block over all rounds)",
    )
    b.add_argument(
        "--max-rounds",
        type=int,
        default=MAX_ROUNDS,
        help="after --rounds, take further rounds (passes over the measurements still "
        f"unsettled: their median's standard error above {100 * SETTLED_WITHIN:.0f}%% of it) up to "
        "this many in all",
    )
    b.add_argument(
        "--tasks",
        type=_csv,
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
    ls = sub.add_parser(
        "lesson",
        help="run one of the course's small examples in every framework, side by side",
        description="Run a lesson (a small example from the course's notes) in each "
        "framework, each in its own process, and show the results side by side with what "
        "they teach. `rosetta lesson --list` names the lessons.",
    )
    ls.add_argument("name", nargs="?", metavar="LESSON", help="the lesson, e.g. autograd")
    ls.add_argument("--list", action="store_true", help="the lessons there are")
    ls.add_argument("--all", action="store_true", help="run every lesson, one after another")
    ls.add_argument(
        "--out",
        metavar="DIR",
        help="also record the results in DIR/lessons.jsonl (the reference run keeps them)",
    )
    ls.add_argument(
        "--jobs",
        type=int,
        default=len(usable_cores()),
        help="frameworks run at once, each on its own cores (default: one per core)",
    )
    ls.add_argument(
        "--frameworks",
        type=_csv,
        help="comma-separated (default: all; one not installed shows how to install it)",
    )
    ex = sub.add_parser(
        "explain",
        help="one task's model in every framework, side by side: layers, parameters, graphs",
        description="Build one task's model in each framework, each in its own process, and "
        "show side by side: which framework layer (with its arguments) each spec layer "
        "becomes, the model as the framework displays it, its parameter count next to the "
        "spec's, and the graph one training step builds (ops counted by type).",
    )
    ex.add_argument("task", nargs="?", metavar="TASK", help="a built-in task, e.g. lenet")
    ex.add_argument("--spec", metavar="FILE", help="a task file of your own instead of TASK")
    ex.add_argument(
        "--frameworks",
        type=_csv,
        help="comma-separated (default: all; one not installed shows how to install it)",
    )
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
    return p


REFERENCE_FILES = (
    "records.jsonl", "summary.csv", "run.json", "equivalence.jsonl", "lessons.jsonl",
    "report.html", "report.md", "report.csv",
)  # fmt: skip


def cmd_docs(args: argparse.Namespace) -> int:
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


def cmd_reference(args: argparse.Namespace) -> int:
    import shutil

    from harness.report.docs import REFERENCE_DIR

    out = Path(args.out or REFERENCE_DIR)
    for name in REFERENCE_FILES:
        (out / name).unlink(missing_ok=True)
    for folder in ("logs", "figures", "traces"):
        shutil.rmtree(out / folder, ignore_errors=True)
    quiet = ["--quiet"] if args.quiet else []
    steps = [
        ["run", "--tasks", "all", "--out", str(out), *quiet],
        ["check", "--tasks", "all", "--out", str(out), *quiet],
        ["lesson", "--all", "--out", str(out)],
        ["report", str(out)],
        ["docs", "--reference", str(out)],
    ]
    codes = []
    for step in steps:
        print(f"\n$ rosetta {shlex.join(step)}", flush=True)
        codes.append(main(step))
    bad = [shlex.join(s[:1]) for s, c in zip(steps, codes, strict=True) if c]
    print(f"\nreference run in {out}/" + (f"; not clean: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def cmd_list() -> int:
    from harness import data
    from harness.spec import builtin_tasks, load_spec, task_param_count

    print("tasks:")
    for name, path in builtin_tasks().items():
        spec = load_spec(path)
        shape = data.sample_shape(spec.data)
        real = f", real data: {spec.data.real}" if spec.data.real else ""
        print(
            f"{'*' if name in DEFAULT_TASKS else ' '} {name:<20} {spec.title}  "
            f"[{spec.data.dataset}{real}; "
            f"{task_param_count(spec, shape):,} parameters]"
        )
    print("  (* the default of run and check; --tasks all runs every one)")
    print("frameworks:")
    for name, info in BACKENDS.items():
        missing = missing_packages(info)
        state = (
            f"not installed (pip install -e '.[{info.extra}]')"
            if missing
            else ", ".join(f"{p} {package_version(p)}" for p in info.packages)
        )
        print(f"  {name:<6} modes {','.join(info.modes):<16} {state}")
    print(
        "modes: eager (op by op), graph (torch.compile / tf.function / jax.jit), "
        "xla (tf.function(jit_compile=True))"
    )
    return 0


# the run options that select the matrix, as harness.api names them -> their dests here
RUN_SELECTION = {
    "tasks": "tasks", "spec_files": "spec", "frameworks": "frameworks", "modes": "modes",
    "devices": "devices", "data_dir": "data_dir", "init": "init", "threads": "threads",
    "timeout_s": "timeout", "epochs": "epochs", "repeats": "repeats",
    "strict_data": "strict_data",
}  # fmt: skip


def given_options(argv: list[str]) -> set[str]:
    """The options a command line sets itself (not left at their defaults)."""
    p = parser()
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for a in sub._actions:
                    a.default = argparse.SUPPRESS
    return set(vars(p.parse_args(argv)))


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.api import start
    from harness.report import write_report
    from harness.report.tables import latest_per_cell
    from harness.results import table
    from harness.runner import UsageError

    selection = {name: getattr(args, dest) for name, dest in RUN_SELECTION.items()}
    out = args.out
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise UsageError(f"--out {args.out!r} and --resume {args.resume!r} name two "
                             "folders: a resumed run writes into the folder it resumes")  # fmt: skip
        given = given_options(argv)
        selection = {k: v for k, v in selection.items() if RUN_SELECTION[k] in given}
        out = args.resume
    elif args.rerun != "none":
        raise UsageError("--rerun goes with --resume RUN_DIR")
    campaign = start(
        out, args.jobs, args.executor, args.address, resume=bool(args.resume),
        command=shlex.join(["rosetta", *argv]), **selection,
    )  # fmt: skip
    try:
        where = f"{campaign.executor.slots} slot(s)" if args.executor == "local" else "ray"
        print(f"rosetta: {len(campaign.matrix)} cells on {where}, results in "
              f"{campaign.store.dir}/", flush=True)  # fmt: skip
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


def cmd_check(args: argparse.Namespace) -> int:
    from harness.api import select_specs
    from harness.check import check_table, run_check
    from harness.results import ResultStore
    from harness.runner import UsageError

    names = args.frameworks or [n for n, i in BACKENDS.items() if not missing_packages(i)]
    for name in names:
        if name not in BACKENDS:
            raise UsageError(f"unknown framework {name!r}; allowed: {', '.join(BACKENDS)}")
        if missing_packages(BACKENDS[name]):
            raise UsageError(f"{name} is not installed: pip install -e '.[{BACKENDS[name].extra}]'")
    if len(names) < 2 and len(args.modes) < 2:
        raise UsageError("nothing to compare: name two frameworks, or two modes of one")
    for dtype in args.dtype:
        if dtype not in ("float32", "float64"):
            raise UsageError(f"unknown dtype {dtype!r}; allowed: float64, float32")
    for mode in args.modes:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, not {args.steps}")
    _check_jobs(args.jobs)
    if args.resume and args.out and Path(args.out) != Path(args.resume):
        raise UsageError(f"--out {args.out!r} and --resume {args.resume!r} name two folders")
    if args.resume and not Path(args.resume).is_dir():
        raise UsageError(f"--resume {args.resume!r}: no such folder")
    specs = select_specs(args.tasks, args.spec)
    for spec, source in specs:
        _preflight(spec, source, args.data_dir)
    store = ResultStore(args.resume or args.out, resume=bool(args.resume))
    print(
        f"rosetta check: {len(specs)} tasks x {', '.join(names)}; results in {store.dir}/",
        flush=True,
    )
    try:
        records = run_check(
            specs,
            {n: BACKENDS[n] for n in names},
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


def _check_jobs(jobs: int) -> None:
    from harness.runner import UsageError

    if jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {jobs}")


def _preflight(spec, source: str, data_dir: str | None) -> None:
    """A task's data files and model checked against each other before any process starts."""
    from harness import data
    from harness.spec import SpecError, check_model

    try:
        data.preflight(spec.data, data_dir)
        check_model(spec, data.sample_shape(spec.data, data_dir))
    except SpecError as err:
        raise SpecError(f"{source}: {err}") from None


def cmd_bench(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.bench import BENCHMARKS, read_rows
    from harness.lessons import show_value
    from harness.results import ResultStore
    from harness.runner import UsageError

    for name in args.benchmarks:
        if name not in BENCHMARKS:
            raise UsageError(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHMARKS)}")
    for fw in args.frameworks:
        if fw not in BACKENDS:
            raise UsageError(f"unknown framework {fw!r}; allowed: {', '.join(BACKENDS)}")
    for mode in args.modes:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be 1 or more, not {args.rounds}")
    if args.jobs != 1:
        raise UsageError(
            f"--jobs {args.jobs}: the bench runs one process at a time (--jobs 1), since "
            "its ratios need the whole machine for each process"
        )
    earlier = read_rows(Path(args.against)) if args.against else None
    store = ResultStore(args.out)
    print(f"rosetta bench: {', '.join(args.benchmarks)}; results in {store.dir}/", flush=True)

    def say(row: dict) -> None:
        shown = {
            k: v
            for k, v in row.items()
            if v is not None
            and k not in ("benchmark", "threads", "turns")  # turns: in bench.jsonl
            and not k.endswith("_rounds")
        }
        print("  " + ", ".join(f"{k} {show_value(v)}" for k, v in shown.items()), flush=True)

    try:
        rows = _bench_rows(args, store.dir, say)
        return _show_bench(args, argv, rows, earlier, store.dir)
    finally:
        store.close()


def _bench_rows(args: argparse.Namespace, out: Path, say) -> list[dict]:
    from harness.bench import run_bench

    return run_bench(
        args.benchmarks,
        args.frameworks,
        args.modes,
        out,
        args.threads,
        say,
        args.rounds,
        progress=not args.quiet,
        max_rounds=args.max_rounds,
        tasks=args.tasks,
    )


def _show_bench(args, argv, rows: list[dict], earlier, out: Path) -> int:
    from harness.bench import HALF, half_ceiling, held, stability, tables, write_markdown

    for name, df in tables(rows).items():
        print(f"\n{name}\n{df.to_string(index=False)}")
        half = half_ceiling(rows, name)
        if not half.empty:
            print(f"\n{name}: the MLP's step at {HALF:.0%} of its matmul ceiling or more "
                  f"from half_from_batch on\n{half.round(3).to_string(index=False)}")  # fmt: skip
    stable = None if earlier is None else stability(rows, earlier)
    if stable is not None:
        print(f"\nstability against {args.against}: {held(stable)}\n"
              f"{stable.round(4).to_string(index=False)}")  # fmt: skip
    path = write_markdown(rows, out, shlex.join(["rosetta", *argv]), stable)
    print(f"\nbench: {out / 'bench.jsonl'}\n       {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report
    from harness.runner import UsageError

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


def cmd_lesson(args: argparse.Namespace) -> int:
    from harness.lessons import LESSONS, format_lesson, list_lessons, run_lesson, save_results
    from harness.runner import UsageError

    if args.list:
        print("lessons:", *list_lessons(), sep="\n")
        return 0
    _check_jobs(args.jobs)
    if (args.name is None) == (not args.all):
        raise UsageError(f"name one lesson ({', '.join(LESSONS)}), or give --all or --list")
    failed = False
    for i, name in enumerate(list(LESSONS) if args.all else [args.name]):
        results = run_lesson(name, args.frameworks, jobs=args.jobs)
        print(("\n" if i else "") + format_lesson(name, results), flush=True)
        if args.out:
            print(f"  (recorded in {save_results(name, results, args.out)})")
        failed |= any(r["status"] == "failed" for r in results.values())
    return 1 if failed else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from harness import data
    from harness.explain import format_explain, run_explain
    from harness.runner import UsageError
    from harness.spec import load_spec, resolve_task

    if (args.task is None) == (args.spec is None):
        raise UsageError("name one task (e.g. rosetta explain lenet) or give --spec FILE")
    spec = load_spec(args.spec) if args.spec else resolve_task(args.task)
    results = run_explain(spec, args.frameworks)
    print(format_explain(spec, results, data.sample_shape(spec.data)))
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0


def main(argv: Sequence[str] | None = None) -> int:
    from harness.data import DataError
    from harness.report.docs import DocsError
    from harness.results import RunDirError
    from harness.runner import UsageError
    from harness.spec import SpecError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "lesson":
            return cmd_lesson(args)
        if args.command == "explain":
            return cmd_explain(args)
        if args.command == "docs":
            return cmd_docs(args)
        if args.command == "reference":
            return cmd_reference(args)
        if args.command == "bench":
            return cmd_bench(args, argv)
        return cmd_list() if args.command == "list" else cmd_run(args, argv)
    except (SpecError, DataError, UsageError, DocsError, RunDirError) as err:
        # user errors: one clear message, no traceback
        print(f"rosetta: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rosetta: interrupted; the records written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``rosetta list``, ``rosetta lesson`` and ``rosetta explain``: what there is, the
course's small examples and one task's model, each framework side by side."""

from __future__ import annotations

import argparse

from harness.cli.common import add_frameworks
from harness.executors.local import usable_cores


def add_list_parser(sub) -> None:
    sub.add_parser("list", help="tasks, frameworks (installed or not, with versions), modes")


def add_lesson_parser(sub) -> None:
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
    add_frameworks(ls)


def add_explain_parser(sub) -> None:
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
    add_frameworks(ex)


def cmd_list(args: argparse.Namespace, argv: list[str]) -> int:
    from harness import data
    from harness.backend import BACKENDS, missing_packages, package_version
    from harness.spec import DEFAULT_TASKS, builtin_tasks, load_spec, task_param_count

    print("tasks:")
    for name, path in builtin_tasks().items():
        spec = load_spec(path)
        real = f", real data: {spec.data.real}" if spec.data.real else ""
        params = task_param_count(spec, data.sample_shape(spec.data))
        print(
            f"{'*' if name in DEFAULT_TASKS else ' '} {name:<20} {spec.title}  "
            f"[{spec.data.dataset}{real}; {params:,} parameters]"
        )
    print("  (* the default of run and check; --tasks all runs every one)")
    print("frameworks:")
    for name, info in BACKENDS.items():
        if missing_packages(info):
            state = f"not installed (pip install -e '.[{info.extra}]')"
        else:
            state = ", ".join(f"{p} {package_version(p)}" for p in info.packages)
        print(f"  {name:<6} modes {','.join(info.modes):<16} {state}")
    print(
        "modes: eager (op by op), graph (torch.compile / tf.function / jax.jit), "
        "xla (tf.function(jit_compile=True))"
    )
    return 0


def cmd_lesson(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.lessons import LESSONS, format_lesson, list_lessons, run_lesson, save_results
    from harness.validate import UsageError, at_least

    if args.list:
        print("lessons:", *list_lessons(), sep="\n")
        return 0
    at_least("--jobs", args.jobs)
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


def cmd_explain(args: argparse.Namespace, argv: list[str]) -> int:
    from harness import data
    from harness.explain import format_explain, run_explain
    from harness.spec import load_spec, resolve_task
    from harness.validate import UsageError

    if (args.task is None) == (args.spec is None):
        raise UsageError("name one task (e.g. rosetta explain lenet) or give --spec FILE")
    spec = load_spec(args.spec) if args.spec else resolve_task(args.task)
    results = run_explain(spec, args.frameworks)
    print(format_explain(spec, results, data.sample_shape(spec.data)))
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0

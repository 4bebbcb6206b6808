"""Lessons without a framework: the registry, user errors, the side-by-side text, and
the worker's "not installed" path with every framework blocked."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backend import BACKENDS
from harness.cli import main
from harness.lessons import LESSONS, format_lesson, save_results
from harness.runner import sibling_module

ROOT = Path(__file__).resolve().parents[2]
ONES = [[1.0, 1.0], [1.0, 1.0]]


def autograd_values(grad_twice: float, means: str, graph: str) -> dict:
    return {
        "y": [[3.0, 3.0], [3.0, 3.0]],
        "z": [[9.0, 9.0], [9.0, 9.0]],
        "t": 9.0,
        "grad_once": [[1.5, 1.5], [1.5, 1.5]],
        "grad_twice": [[grad_twice] * 2] * 2,
        "twice_means": means,
        "graph": [f"{graph}:", "  node A", "  node B"],
    }


def error_of(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rosetta: error:") and "Traceback" not in err
    return err


def test_unknown_lesson_names_the_known_ones(capsys):
    err = error_of(["lesson", "autograde"], capsys)
    assert "'autograde'" in err and "known lessons: autograd" in err


def test_no_lesson_and_unknown_framework_are_user_errors(capsys):
    assert "autograd" in error_of(["lesson"], capsys)
    assert "allowed: torch, tf, jax" in error_of(
        ["lesson", "autograd", "--frameworks", "mxnet"], capsys
    )


def test_list(capsys):
    assert main(["lesson", "--list"]) == 0
    assert "autograd" in capsys.readouterr().out


@pytest.mark.parametrize("fw", list(BACKENDS))
def test_every_lesson_function_exists_in_every_framework(fw):
    # read, not imported: the framework need not be installed to check the names line up
    path = ROOT / (sibling_module(BACKENDS[fw], "lessons").replace(".", "/") + ".py")
    defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert {lesson.function for lesson in LESSONS.values()} <= defined, path


def test_format_lesson_side_by_side():
    results = {
        "torch": {
            "status": "ok",
            "version": "2.13.0",
            "values": autograd_values(3.0, "accumulated", "grad_fn chain"),
        },
        "tf": {"status": "unavailable", "version": None, "error": "tf is not installed: run pip"},
        "jax": {
            "status": "ok",
            "version": "0.10.2",
            "values": autograd_values(1.5, "fresh", "jaxpr"),
        },
        "other": {"status": "failed", "version": "1", "error": "ValueError: boom\n  at line 3"},
    }
    text = format_lesson("autograd", results)
    lines = text.splitlines()
    head = next(line for line in lines if line.lstrip().startswith("torch 2.13.0"))
    # columns in the order given, each framework's version beside its name
    starts = [head.index(h) for h in ("torch 2.13.0", "tf", "jax 0.10.2", "other 1")]
    assert starts == sorted(starts)

    def row(label: str) -> list[str]:
        line = next(line for line in lines if line.startswith(f"  {label}  "))
        return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]

    assert row("y = x + 2") == ["[[3, 3], [3, 3]]", "not installed", "[[3, 3], [3, 3]]", "failed"]
    assert row("t = mean(z)") == ["9", "-", "9", "-"]
    assert row("dt/dx, 1 call") == [
        "[[1.5, 1.5], [1.5, 1.5]]",
        "-",
        "[[1.5, 1.5], [1.5, 1.5]]",
        "-",
    ]
    assert row("dt/dx, 2 calls") == ["[[3, 3], [3, 3]]", "-", "[[1.5, 1.5], [1.5, 1.5]]", "-"]
    assert row("2 calls give") == ["accumulated", "-", "fresh", "-"]
    # the install hint and the error beneath the table; graphs of the ok ones only
    assert "  tf: tf is not installed: run pip" in lines
    assert "  other: ValueError: boom" in lines and "      at line 3" in lines
    assert "  torch: grad_fn chain:" in lines and "  jax: jaxpr:" in lines
    assert "    node A" in lines
    assert "retain_graph=True" in text and "zero_grad" in text
    # each framework's own part of the why, from its declaration, under its name
    why = text[text.index("Why:") :]
    assert why.count("\n  torch: ") == why.count("\n  jax: ") == why.count("\n  tf: ") == 1
    assert "other:" not in why  # a backend that declares nothing adds nothing


@pytest.mark.parametrize("fw", sorted(BACKENDS))
def test_every_backend_says_what_it_does_in_every_lesson(fw):
    notes = dict(BACKENDS[fw].lessons)
    assert set(notes) == set(LESSONS), fw
    assert all(note.strip() for note in notes.values())


BLOCKED = """
import sys
for name in ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax", "optax"):
    sys.modules[name] = None  # any import of it now raises ImportError
from harness.cli import main
sys.exit(main(["lesson", "autograd"]))
"""


def test_lesson_with_no_framework_installed_shows_how_to_install():
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("not installed") >= 2 * len(BACKENDS)  # column and hint each
    for info in BACKENDS.values():
        assert f"pip install -e '.[{info.extra}]'" in out.stdout


def test_worker_turns_a_lessons_error_into_a_failed_result(tmp_path):
    from harness.runner import run_worker, thread_env

    cfg = {"module": "harness.lessons", "function": "no_such_lesson_function"}
    run = run_worker("harness.lessons", cfg, thread_env(None, 0), 60, tmp_path / "log")
    assert run.record["status"] == "failed"
    assert "no_such_lesson_function" in run.record["error"]


def test_all_lessons_are_recorded_with_out(tmp_path):
    """--all --out runs every lesson and keeps one line per lesson and framework;
    a second run of one lesson replaces its lines and keeps the others'."""
    script = BLOCKED.replace(
        'main(["lesson", "autograd"])', f'main(["lesson", "--all", "--out", {str(tmp_path)!r}])'
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    path = tmp_path / "lessons.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["lesson"], r["framework"]) for r in rows] == [
        (name, fw) for name in LESSONS for fw in BACKENDS
    ]
    assert {r["status"] for r in rows} == {"unavailable"}
    for name in LESSONS:
        assert format_lesson(name, {}).splitlines()[0] in out.stdout
    fresh = {"torch": {"status": "ok", "values": autograd_values(3.0, "accumulated", "g")}}
    save_results("autograd", fresh, tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["lesson"], r["framework"]) for r in rows] == [
        *((n, fw) for n in LESSONS if n != "autograd" for fw in BACKENDS),
        ("autograd", "torch"),
    ]
    assert rows[-1]["values"]["grad_twice"] == [[3.0, 3.0], [3.0, 3.0]]


def test_lesson_needs_a_name_or_all_not_both(capsys):
    assert "--all" in error_of(["lesson", "autograd", "--all"], capsys)

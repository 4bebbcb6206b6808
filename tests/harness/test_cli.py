"""The command line: user errors get one clear line and exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.api import select_specs
from harness.cli import main
from harness.spec import DEFAULT_TASKS, builtin_tasks

SPEC = """
name = "mine"
[data]
dataset = "digits28"
[model]
input_shape = [28, 28, 1]
layers = [ {{ type = "flatten" }}, {{ type = "{layer}", units = 10 }} ]
[recipe]
loss = "softmax_cross_entropy"
optimizer = {{ name = "sgd", learning_rate = 0.1 }}
batch_size = 16
epochs = 1
"""


def error_of(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rosetta: error:") and "Traceback" not in err
    return err


def test_unknown_task(capsys):
    assert "built-in tasks: " in error_of(["run", "--tasks", "nosuch"], capsys)


def test_unknown_framework_and_mode(capsys):
    assert "allowed: torch, tf, jax" in error_of(
        ["run", "--tasks", "xor", "--frameworks", "mxnet"], capsys
    )
    assert "allowed: eager, graph, xla" in error_of(
        ["run", "--tasks", "xor", "--modes", "lazy"], capsys
    )


def test_unknown_layer_in_users_file(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(SPEC.format(layer="densse"))
    err = error_of(["run", "--spec", str(path)], capsys)
    assert "mine.toml" in err and "model.layers[1]" in err and "'densse'" in err


def test_malformed_file(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    assert "bad.toml: not valid TOML" in error_of(["run", "--spec", str(path)], capsys)


def test_shape_that_cannot_work(tmp_path, capsys):
    path = tmp_path / "flat.toml"
    path.write_text(SPEC.format(layer="dense").replace("[28, 28, 1]", "[8, 8, 1]"))
    err = error_of(["run", "--spec", str(path)], capsys)
    assert "flat.toml" in err and "does not match data set 'digits28'" in err


def test_missing_data_dir(tmp_path, capsys):
    err = error_of(["run", "--tasks", "lenet", "--data-dir", str(tmp_path / "none")], capsys)
    assert "does not exist" in err and "t10k-images-idx3-ubyte" in err


def test_list_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "list"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "lenet" in out.stdout and "frameworks:" in out.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--help"], capture_output=True, text=True
    )
    assert "--data-dir" in helped.stdout and "--init" in helped.stdout
    # the tasks a bare `rosetta run` takes are the ones `rosetta list` marks
    marked = {line.split()[1] for line in out.stdout.splitlines() if line.startswith("* ")}
    assert marked == set(DEFAULT_TASKS)


def test_default_tasks_all_and_files(tmp_path):
    assert [s.name for s, _ in select_specs()] == list(DEFAULT_TASKS)
    assert set(DEFAULT_TASKS) < set(builtin_tasks())
    assert [s.name for s, _ in select_specs(["all"])] == list(builtin_tasks())
    mine = tmp_path / "mine.toml"
    mine.write_text(SPEC.format(layer="dense"))
    # a file alone runs alone; with "all" it comes after the built-ins
    assert [s.name for s, _ in select_specs(spec_files=[mine])] == ["mine"]
    assert [s.name for s, _ in select_specs(["all", str(mine)])][-1] == "mine"


@pytest.mark.parametrize("argv", [["run", "--tasks", "xor", "--devices", "tpu"]])
def test_unknown_device(argv, capsys):
    assert "allowed: cpu, gpu, auto" in error_of(argv, capsys)


def test_check_usage_errors(capsys):
    assert "allowed: float64, float32" in error_of(["check", "--dtype", "float16"], capsys)
    assert "allowed: torch, tf, jax" in error_of(["check", "--frameworks", "mxnet"], capsys)
    assert "--steps must be 1 or more, not 0" in error_of(["check", "--steps", "0"], capsys)


def test_reference_empties_the_folder_then_runs_every_step_in_order(tmp_path, monkeypatch):
    from harness import cli

    out = tmp_path / "reference"
    (out / "logs").mkdir(parents=True)
    for name in ("records.jsonl", "equivalence.jsonl", "lessons.jsonl", "keep.txt"):
        (out / name).write_text("old\n")
    calls = []

    def step(name, code=0):
        def fake(args, *rest):
            assert not (out / "records.jsonl").exists() and not (out / "logs").exists()
            calls.append(
                (
                    name,
                    getattr(args, "out", None)
                    or getattr(args, "run_dir", None)
                    or getattr(args, "reference", None),
                    getattr(args, "tasks", None),
                )
            )
            return code

        return fake

    for name in ("run", "check", "lesson", "report", "docs"):
        add, _ = cli.COMMANDS[name]
        monkeypatch.setitem(cli.COMMANDS, name, (add, step(name, code=int(name == "docs"))))
    assert main(["reference", "--out", str(out), "--quiet"]) == 1  # docs reported problems
    assert calls == [
        ("run", str(out), ["all"]),
        ("check", str(out), ["all"]),
        ("lesson", str(out), None),
        ("report", str(out), None),
        ("docs", str(out), None),
    ]
    assert (out / "keep.txt").exists()  # only what the steps write is removed


def test_docs_without_a_reference_run_says_how_to_make_one(tmp_path, capsys):
    assert main(["docs", "--check", "--reference", str(tmp_path)]) == 2
    assert "rosetta reference" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input, before any cell


def one_error(argv, capsys) -> str:
    err = error_of(argv, capsys)
    assert err.count("\n") == 1, err  # one line
    return err


def test_a_task_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes(SPEC.format(layer="dense").replace('"mine"', '"caf\xe9"').encode("latin-1"))
    err = one_error(["run", "--spec", str(path)], capsys)
    assert "latin1.toml: not UTF-8 text" in err


def test_an_out_folder_that_cannot_be_created(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    err = one_error(["run", "--tasks", "xor", "--out", str(tmp_path / "afile" / "run")], capsys)
    assert "--out" in err and "cannot create the folder" in err


@pytest.mark.parametrize(
    "argv,words",
    [
        (["run", "--tasks", "xor", "--timeout", "-1"], "--timeout takes seconds above 0, not -1"),
        (["run", "--tasks", "xor", "--timeout", "0"], "--timeout takes seconds above 0"),
        (["run", "--tasks", "xor", "--epochs", "0"], "--epochs must be 1 or more, not 0"),
        (["run", "--tasks", "xor", "--jobs", "0"], "--jobs must be 1 or more, not 0"),
        (["run", "--tasks", "xor", "--jobs", "999"], "--jobs 999 needs 999 cores"),
        (["run", "--tasks", "xor", "--rerun", "failed"], "--rerun goes with --resume"),
        (["run", "--tasks", "xor", "--address", "1.2.3.4:1"], "--address goes with --executor ray"),
        (["run", "--resume", "/nonexistent/run"], "--resume '/nonexistent/run': no such folder"),
        (["bench", "--jobs", "2"], "the bench runs one process at a time (--jobs 1)"),
        (["check", "--jobs", "0"], "--jobs must be 1 or more"),
        (["lesson", "autograd", "--jobs", "0"], "--jobs must be 1 or more"),
    ],
)
def test_options_that_cannot_work(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run that started anyway would leave results/ here
    assert words in one_error(argv, capsys)
    assert not (tmp_path / "results").exists()


def test_a_data_file_that_is_not_text_is_refused_before_any_cell(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "corpus.bin"
    path.write_bytes(bytes(range(256)) * 40)
    err = one_error(["run", "--tasks", "char_lstm", "--data-file", str(path)], capsys)
    assert "corpus.bin" in err and "not UTF-8 text" in err
    assert not (tmp_path / "results").exists()  # refused before the run's folder, and any cell

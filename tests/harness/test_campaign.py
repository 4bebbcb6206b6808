"""Campaigns with the numpy backend: parallel slots, durable records, resume after
``kill -9``, and bad input refused before any cell starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.api import resumed_options
from harness.executors import Job
from harness.executors.local import LocalExecutor, make_slots, usable_cores
from harness.results import ResultStore, RunDirError, load_records
from harness.runner import run_matrix, still_to_run
from harness.validate import UsageError
from harness.worker import run_worker
from tests.harness.test_runner import cell

ROOT = Path(__file__).resolve().parents[2]
FAKE_PLUGIN = "fake=tests.harness.fake_backend:NumpyBackend^numpy"
TASKS = "xor,xor_single_layer,linear_regression,multi_feature_mlp"


def rosetta(*argv: str, env: dict | None = None, **kw) -> subprocess.Popen:
    """``rosetta ...`` in its own process, with the numpy backend as framework ``fake``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ROSETTA_BACKENDS": FAKE_PLUGIN,
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def cell_processes(label_part: str, tag: str) -> list[int]:
    """Pids of the live cell processes whose ROSETTA_CELL label contains ``label_part``
    and whose ROSETTA_TEST_TAG is ``tag``: another test's cells, on the other pytest
    worker, must not count."""
    mark = f"ROSETTA_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (
            state != "Z"
            and mark in environ
            and any(e.startswith(b"ROSETTA_CELL=") and label_part.encode() in e for e in environ)
        ):
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- slots


def test_slots_own_disjoint_equal_core_sets():
    slots = make_slots(2, False, [0, 1, 2, 3, 4], 0)
    assert [s.cores for s in slots] == [(0, 1), (2, 3)]  # core 4 idle: equal shares
    assert make_slots(1, False, [0, 1], 0)[0].cores is None  # one slot: the whole machine
    assert [s.gpu for s in make_slots(2, True, [0, 1], 2)] == ["0", "1"]
    with pytest.raises(UsageError, match="--jobs 3 needs 3 cores"):
        make_slots(3, False, [0, 1], 0)
    with pytest.raises(UsageError, match="needs 2 GPUs"):
        make_slots(2, True, [0, 1], 1)
    with pytest.raises(UsageError, match="--jobs must be 1 or more"):
        make_slots(0, False, [0, 1], 0)


@pytest.mark.skipif(len(usable_cores()) < 2, reason="needs two cores")
def test_a_slot_pins_its_worker_before_it_imports_anything(tmp_path):
    executor = LocalExecutor(2)
    try:
        code = "import os, json; print(json.dumps(sorted(os.sched_getaffinity(0))))"
        (tmp_path / "probe.py").write_text(code)
        job = Job("probe", "probe", "{}", {"PYTHONPATH": str(tmp_path)}, 30)
        results = [executor.submit(job).result() for _ in range(2)]
    finally:
        executor.close()
    for r in results:
        assert json.loads(r.log) == list(r.extra["cores"]) and len(r.extra["cores"]) == 1


@pytest.mark.skipif(len(usable_cores()) < 2, reason="needs two cores")
def test_two_slots_run_cells_side_by_side_and_records_say_so(tmp_path):
    store = ResultStore(tmp_path / "run")
    cells = [cell(t, threads=1) for t in ("xor", "xor_single_layer", "xor", "linear_regression")]
    records = run_matrix(cells, store, progress=False, executor=LocalExecutor(2))
    assert [r["status"] for r in records] == ["ok"] * 4
    assert {r["slot"] for r in records} == {0, 1}
    assert all(len(r["cores"]) == 1 and r["threads"] == 1 for r in records)
    assert any(r["beside"] >= 1 for r in records)
    # the same cell gives the same numbers in either slot
    losses = [[p["train_loss"] for p in r["curve"]] for r in records]
    assert losses[0] == losses[2]


def test_run_worker_keeps_the_log_and_kills_at_the_deadline(tmp_path):
    (tmp_path / "chatty.py").write_text("import time\nprint('hello')\ntime.sleep(60)\n")
    t0 = time.monotonic()
    r = run_worker("chatty", "{}", {"PYTHONPATH": str(tmp_path)}, 2, tmp_path / "log")
    assert r.status == "timeout" and time.monotonic() - t0 < 20
    assert "hello" in r.log and (tmp_path / "log").read_text() == r.log


# --------------------------------------------------------------------------- records


def test_a_cut_off_last_line_is_skipped_with_a_warning_and_repaired(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    path.write_text('{"task": "a", "status": "ok"}\n{"task": "b", "sta')
    assert [r["task"] for r in load_records(path)] == ["a"]
    assert "cut off" in capsys.readouterr().err
    load_records(path, repair=True)
    assert path.read_text() == '{"task": "a", "status": "ok"}\n'


def test_a_broken_line_before_the_last_names_the_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"task": "a"}\nnot json\n{"task": "b"}\n')
    with pytest.raises(RunDirError, match="records.jsonl: line 2 is not a JSON record"):
        load_records(path)


def test_a_live_run_holds_its_folder(tmp_path):
    first = ResultStore(tmp_path / "run", command="rosetta run")
    with pytest.raises(
        RunDirError, match=f"in use by another rosetta process \\(pid {os.getpid()}"
    ):
        ResultStore(tmp_path / "run")
    first.close()
    ResultStore(tmp_path / "run").close()


def test_an_out_folder_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="--out .*cannot create the folder"):
        ResultStore(tmp_path / "file" / "run")


# --------------------------------------------------------------------------- resume


def test_resume_runs_what_has_no_finished_record():
    cells = [cell("xor"), cell("xor_single_layer"), cell("linear_regression")]
    key = {
        "spec_hash": cells[0].spec.spec_hash(),
        "framework": "fake",
        "mode": "eager",
        "device": "cpu",
        "dtype": "float32",
        "init": "shared",
        "threads": 0,
        "repeat": 0,
    }
    records = [
        {**key, "task": "xor", "status": "ok"},
        {
            **key,
            "task": "xor_single_layer",
            "status": "failed",
            "spec_hash": cells[1].spec.spec_hash(),
        },
        {**key, "task": "linear_regression", "status": "ok", "spec_hash": "another"},
    ]
    todo = still_to_run(cells, records)
    assert [c.spec.name for c in todo] == ["linear_regression"]  # its spec changed since
    todo = still_to_run(cells, records, rerun="failed")
    assert [c.spec.name for c in todo] == ["xor_single_layer", "linear_regression"]
    # a record made with other framework versions is another measurement
    old = [{**r, "versions": {"numpy": "0.0.1"}} for r in records]
    assert len(still_to_run(cells, old)) == 3


def test_resume_refuses_other_options_naming_them(tmp_path):
    ResultStore(tmp_path, command="rosetta run", options={"tasks": ["xor"], "epochs": None}).close()
    assert resumed_options(tmp_path, {"tasks": ["xor"]})["tasks"] == ["xor"]
    with pytest.raises(UsageError, match=r"tasks \['lenet'\] \(the run had \['xor'\]\)"):
        resumed_options(tmp_path, {"tasks": ["lenet"]})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc, PDEATHSIG")
def test_kill_9_mid_run_then_resume_runs_each_cell_once(tmp_path):
    out = tmp_path / "run"
    argv = [
        "run",
        "--frameworks",
        "fake",
        "--modes",
        "eager",
        "--tasks",
        TASKS,
        "--repeats",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--timeout",
        "120",
    ]
    # the third task's first cell hangs: the kill finds a worker in the middle of a cell
    tag = str(tmp_path)
    env = {"ROSETTA_FAKE_FAULT": "hang@linear_regression", "ROSETTA_TEST_TAG": tag}
    proc = rosetta(*argv, env=env)
    deadline = time.monotonic() + 120
    while not cell_processes("linear_regression", tag) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    workers = cell_processes("linear_regression", tag)
    assert workers, "the hanging cell never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 5
    while cell_processes("/fake/", tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not cell_processes("/fake/", tag), "a worker outlived its runner by 5 s"
    before = load_records(out)
    assert [r["task"] for r in before] == ["xor", "xor", "xor_single_layer", "xor_single_layer"]

    code, stdout, err = finish(rosetta("run", "--resume", str(out), "--quiet"))
    assert code == 0, err
    assert "4 of 8 cells have records already; running 4" in stdout
    after = load_records(out)
    assert after[:4] == before  # kept as they were, not rerun
    keys = [(r["task"], r["repeat"]) for r in after if r["status"] == "ok"]
    assert len(after) == 8 and len(set(keys)) == 8
    assert (out / "report.md").is_file() and "hang" not in (out / "report.md").read_text()


def test_resume_after_a_cut_off_last_line(tmp_path):
    out = tmp_path / "run"
    argv = [
        "run",
        "--frameworks",
        "fake",
        "--modes",
        "eager",
        "--tasks",
        "xor,xor_single_layer",
        "--out",
        str(out),
        "--quiet",
    ]
    code, _, err = finish(rosetta(*argv))
    assert code == 0, err
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    code, stdout, err = finish(rosetta("report", str(out)))
    assert code == 0 and "cut off" in err and "Traceback" not in err
    code, stdout, err = finish(rosetta("run", "--resume", str(out), "--quiet"))
    assert code == 0, err
    assert "1 of 2 cells have records already; running 1" in stdout
    after = load_records(out)
    assert [r["task"] for r in after] == ["xor", "xor_single_layer"]
    assert all(r["status"] == "ok" for r in after)


def test_resume_with_other_options_is_refused_before_any_cell(tmp_path):
    out = tmp_path / "run"
    code, _, err = finish(
        rosetta(
            "run",
            "--frameworks",
            "fake",
            "--modes",
            "eager",
            "--tasks",
            "xor",
            "--out",
            str(out),
            "--quiet",
        )
    )
    assert code == 0, err
    code, _, err = finish(rosetta("run", "--resume", str(out), "--tasks", "xor,xor_single_layer"))
    assert code == 2 and err.count("\n") == 1
    assert "rosetta: error: --resume" in err and "the run had ['xor']" in err
    assert len(load_records(out)) == 1


# --------------------------------------------------------------------------- threads, progress


def test_a_cells_own_thread_settings_win_over_inherited_ones(tmp_path, monkeypatch):
    from harness.runner import thread_env

    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # as Ray sets it in its workers
    code = "import os, json; print(json.dumps(os.environ.get('OMP_NUM_THREADS')))"
    (tmp_path / "probe.py").write_text(code)
    for threads, want in ((0, None), (2, "2")):
        env = {**thread_env(None, threads), "PYTHONPATH": str(tmp_path)}
        assert json.loads(run_worker("probe", "{}", env, 30).log) == want


def test_progress_off_a_terminal_is_one_line_per_finished_cell(capsys):
    from harness.progress import Progress

    bar = Progress(2, tty=False)
    bar.started(0, "xor/fake/eager/cpu")
    bar.event(0, {"event": "epoch", "epoch": 1, "epochs": 3, "train_loss": 0.5})
    bar.finished(
        "xor/fake/eager/cpu", {"status": "ok", "metrics": {"accuracy": 1.0}, "total_s": 1.25}, 0
    )
    bar.close()
    assert capsys.readouterr().out == "[1/2] xor/fake/eager/cpu: ok (accuracy 1, 1.2 s)\n"


def test_the_report_marks_step_times_taken_beside_other_cells(tmp_path):
    from harness.report import write_report

    store = ResultStore(tmp_path / "run", command="rosetta run --jobs 2")
    for task, beside in (("xor", 1), ("xor_single_layer", 0)):
        record = run_one_record(task, tmp_path)
        store.add({**record, "beside": beside})
    store.close()
    text = write_report(tmp_path / "run")["md"].read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if "| fake |" in line}
    assert " †" in rows["xor"] and "†" not in rows["xor_single_layer"]
    assert "†: timed while other cells ran beside it" in text


def run_one_record(task: str, tmp_path) -> dict:
    from harness.runner import run_cell_process

    record = run_cell_process(cell(task), "test", tmp_path / f"{task}.log")
    assert record["status"] == "ok", record["error"]
    return record

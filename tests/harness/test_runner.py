"""The runner with a numpy backend: cells in subprocesses, statuses, records, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.backend import BackendInfo
from harness.report import write_report
from harness.results import ResultStore, load_records, summary, table
from harness.runner import Cell, run_cell_process, run_matrix
from harness.spec import resolve_task

ROOT = str(Path(__file__).resolve().parents[2])
FAKE = BackendInfo(
    "fake", "tests.harness.fake_backend:NumpyBackend", ("numpy",), "", ("eager", "graph")
)
ABSENT = BackendInfo(
    "ghost", "impls.ghost.backend:Ghost", ("no_such_framework_xyz",), "ghost", ("eager",)
)


def cell(task="xor", backend=FAKE, **kw):
    spec = resolve_task(task)
    return Cell(spec, task, backend.name, "eager", backend=backend, extra_paths=(ROOT,), **kw)


def run_one(c, tmp_path):
    return run_cell_process(c, "test", tmp_path / "log.txt")


def test_fake_backend_learns_xor_and_fills_the_record(tmp_path):
    r = run_one(cell("xor"), tmp_path)
    assert r["status"] == "ok", r["error"]
    assert r["metrics"]["accuracy"] == 1.0
    assert len(r["curve"]) == r["epochs"] == 30
    assert r["param_count"] == r["param_count_spec"] == 33
    for key in (
        "first_step_s",
        "step_median_s",
        "step_iqr_s",
        "total_s",
        "import_s",
        "build_s",
        "peak_rss_mb",
        "spec_hash",
        "seed",
        "final_train_loss",
        "versions",
        "data",
    ):
        assert r[key] is not None, key
    assert r["curve"][-1]["train_loss"] < r["curve"][0]["train_loss"]
    assert r["epochs_to_target"] is not None and r["time_to_target_s"] > 0


def test_a_cells_peak_memory_is_its_own_not_its_parents(tmp_path):
    # the parent holds 400 MiB while the cell runs; the cell's record must not
    # read that as its own peak (getrusage's ru_maxrss would)
    held = np.ones(100 << 20, np.float32)
    r = run_one(cell("xor"), tmp_path)
    assert held.sum() > 0 and r["status"] == "ok", r["error"]
    assert 10 < r["peak_rss_mb"] < 300, r["peak_rss_mb"]


def test_single_layer_cannot_learn_xor(tmp_path):
    r = run_one(cell("xor_single_layer"), tmp_path)
    assert r["status"] == "ok" and r["metrics"]["accuracy"] <= 0.75


def test_linear_regression_reports_weights(tmp_path):
    r = run_one(cell("linear_regression"), tmp_path)
    assert r["status"] == "ok", r["error"]
    assert abs(r["weights"]["linear.kernel"][0][0] - 1.0) < 0.1


@pytest.mark.parametrize(
    "fault,status,words",
    [
        ("raise", "failed", "injected failure"),
        ("crash", "failed", "exited with code"),
        ("nan", "diverged", "loss became nan"),
        ("params", "failed", "parameters, the spec has"),
        ("hang", "timeout", "no result within"),
    ],
)
def test_faults_become_statuses(fault, status, words, tmp_path, monkeypatch):
    monkeypatch.setenv("ROSETTA_FAKE_FAULT", fault)
    r = run_one(cell("xor", timeout_s=8), tmp_path)
    assert r["status"] == status
    assert words in r["error"]


def test_missing_framework_is_unavailable_and_the_run_goes_on(tmp_path):
    store = ResultStore(tmp_path / "run")
    cells = [cell("xor", backend=ABSENT), cell("xor"), cell("xor_single_layer")]
    records = run_matrix(cells, store, progress=False)
    assert [r["status"] for r in records] == ["unavailable", "ok", "ok"]
    assert "pip install -e '.[ghost]'" in records[0]["error"]
    saved = load_records(tmp_path / "run")
    assert [r["task"] for r in saved] == ["xor", "xor", "xor_single_layer"]
    csv = (tmp_path / "run" / "summary.csv").read_text().splitlines()
    assert len(csv) == 4 and csv[0].startswith("task,framework,mode")
    text = table(records)
    assert "unavailable" in text and "accuracy 1.0000" in text


def test_same_batches_same_result(tmp_path):
    a = run_one(cell("multi_feature_mlp"), tmp_path)
    b = run_one(cell("multi_feature_mlp"), tmp_path)
    assert a["status"] == "ok" and a["metrics"]["accuracy"] >= 0.9
    assert [p["train_loss"] for p in a["curve"]] == [p["train_loss"] for p in b["curve"]]


def test_records_are_json_and_summarize(tmp_path):
    r = run_one(cell("xor"), tmp_path)
    json.dumps(r)
    df = summary([r])
    assert df.loc[0, "test_metric"] == "accuracy" and df.loc[0, "step_median_ms"] > 0


def test_report_shows_failed_and_missing_values(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "run", command="rosetta run --tasks xor")
    store.add(run_one(cell("xor"), tmp_path))
    monkeypatch.setenv("ROSETTA_FAKE_FAULT", "raise")
    store.add(run_one(cell("xor_single_layer"), tmp_path))
    text = write_report(store.dir)["md"].read_text()
    assert "| xor | fake | eager | ok | accuracy 1.0000 |" in text
    assert "| xor_single_layer | fake | eager | failed | - | - | - |" in text
    assert "**xor_single_layer/fake/eager/cpu**: failed: ValueError: injected failure" in text
    assert "rosetta run --tasks xor\n```" in text


def test_autoencoder_records_its_baseline_and_codes(tmp_path):
    r = run_one(cell("autoencoder"), tmp_path)
    assert r["status"] == "ok", r["error"]
    base = r["baselines"]["mean_image_mse"]
    assert 0.5 < base < 1.5
    assert r["metrics"]["mse"] < base  # a 2-d code already beats the mean image
    codes = r["layer_outputs"]
    assert codes["layer"] == "code" and len(codes["values"]) == len(codes["labels"]) == 359
    assert len(codes["values"][0]) == 2

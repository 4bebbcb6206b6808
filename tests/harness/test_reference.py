"""The committed reference run (results/reference/), the run the lessons cite: it
covers every built-in task in every framework and mode, every cell finished, the
frameworks compute the same function and end within each task's stated tolerance,
and each task clears the bar its spec sets (chance, a baseline, modes covered)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backend import BACKENDS
from harness.report import docs, final_tolerances
from harness.report.tables import final_agreement, latest_per_cell, summary_table
from harness.results import load_records
from harness.spec import builtin_tasks

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference"
MODES = ("eager", "graph")


@pytest.fixture(scope="module")
def records() -> dict[tuple[str, str, str], dict]:
    found, _ = latest_per_cell(load_records(REFERENCE))
    return {(r["task"], r["framework"], r["mode"]): r for r in found}


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (REFERENCE / name).read_text().splitlines() if line]


def test_every_task_framework_and_mode_ran_and_finished(records):
    expected = {(t, fw, m) for t in builtin_tasks() for fw in BACKENDS for m in MODES}
    assert expected <= set(records), sorted(expected - set(records))
    bad = {k: r["status"] for k, r in records.items() if r["status"] != "ok"}
    assert not bad
    assert {r["init"] for r in records.values()} == {"shared"}


def test_every_equivalence_check_passed_in_both_precisions():
    checks = _jsonl("equivalence.jsonl")
    covered = {(c["task"], c["dtype"]) for c in checks}
    assert covered == {(t, d) for t in builtin_tasks() for d in ("float64", "float32")}
    failed = [(c["task"], c["dtype"], c["a"], c["b"], c["status"]) for c in checks]
    assert all(f[-1] == "pass" for f in failed), [f for f in failed if f[-1] != "pass"]


def test_final_metrics_agree_within_each_tasks_stated_tolerance(records):
    df = summary_table(list(records.values()))
    agreement = final_agreement(df, final_tolerances(list(records.values())))
    assert set(agreement["task"]) == set(builtin_tasks())
    off = agreement[agreement["status"] != "pass"]
    assert off.empty, off[["task", "mode", "spread", "tolerance", "status"]].to_string()


@pytest.mark.parametrize("fw", list(BACKENDS))
@pytest.mark.parametrize("mode", MODES)
def test_each_task_clears_its_bar(records, fw, mode):
    def rec(task):
        return records[(task, fw, mode)]

    names = rec("rnn_names")
    assert names["metrics"]["accuracy"] > 5 * names["data"]["chance"]  # 18 classes
    auto = rec("autoencoder")
    assert auto["metrics"]["mse"] < 0.6 * auto["baselines"]["mean_image_mse"]
    gan = rec("gan")
    assert gan["metrics"]["modes_covered"] >= 7  # of the ring's 8
    lm = rec("char_lstm")
    assert lm["metrics"]["loss"] < 0.5 * lm["baselines"]["unigram_entropy_loss"]
    assert len(lm["sample"]["text"]) > 50
    assert rec("xor")["metrics"]["accuracy"] == 1.0
    assert rec("xor_single_layer")["metrics"]["accuracy"] < 1.0  # one layer cannot
    assert rec("hello_rnn")["metrics"]["accuracy"] == 1.0
    for task in ("lenet", "inception", "resnet", "softmax_mlp"):
        assert rec(task)["metrics"]["accuracy"] > 0.95, task


def test_the_lessons_ran_in_every_framework_and_show_the_notes_point():
    lessons = {(r["lesson"], r["framework"]): r for r in _jsonl("lessons.jsonl")}
    from harness.lessons import LESSONS

    assert set(lessons) == {(n, fw) for n in LESSONS for fw in BACKENDS}
    assert {r["status"] for r in lessons.values()} == {"ok"}
    for fw in BACKENDS:
        assert lessons[("autograd", fw)]["values"]["grad_once"] == [[1.5, 1.5], [1.5, 1.5]]
    twice = {fw: lessons[("autograd", fw)]["values"]["grad_twice"][0][0] for fw in BACKENDS}
    assert twice == {"torch": 3.0, "tf": 1.5, "jax": 1.5}


def test_the_lessons_cite_the_committed_reference_run():
    """Every lesson page's numbers and generated blocks are what the committed
    reference run and the code say today, and no measured-looking number is uncited."""
    found = docs.pages()
    lessons = [p for p in found if p.parent == docs.DOCS_DIR and p.name[:2].isdigit()]
    assert len(lessons) >= 14, [p.name for p in found]
    ref = docs.Reference.load()
    bad = [line for page in found for line in docs.problems(page, ref)]
    assert not bad, "\n".join(bad)

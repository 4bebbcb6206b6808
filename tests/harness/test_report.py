"""Reports with no framework: records from the numpy backend through the real runner,
and small hand-made records for the cases a fake run cannot reach."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.report import write_report
from harness.report.render import SECTIONS
from harness.report.tables import display_table, summary_table
from harness.results import ResultStore
from harness.runner import run_matrix
from tests.harness.test_runner import ABSENT, cell

COMMAND = "rosetta run --tasks xor --frameworks fake"


def make_run(run_dir: Path) -> Path:
    """An ok cell, a failed one (no curve: it fails at its first step) and an
    unavailable one (no curve, few fields), written by the real runner and store."""
    store = ResultStore(run_dir, command=COMMAND)
    run_matrix([cell("xor"), cell("xor", backend=ABSENT)], store, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROSETTA_FAKE_FAULT", "raise")
        run_matrix([cell("xor_single_layer")], store, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, Path]:
    run_dir = make_run(tmp_path_factory.mktemp("run"))
    check = {"task": "xor", "dtype": "float64", "status": "pass", "max_rel": 1e-16}
    lines = [{**check, "a": "fake/eager", "b": "fake/graph"}]
    (run_dir / "equivalence.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return write_report(run_dir)


def test_html_is_self_contained_with_every_section(report):
    text = report["html"].read_text()
    assert "data:image/png;base64," in text
    # nothing fetched: no src/href pointing at a server, no external stylesheet or script
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<script" not in text and "<link" not in text
    for heading in SECTIONS:
        assert f">{heading}</h2>" in text, heading
    assert "xor</h3>" in text and "xor_single_layer</h3>" in text


def test_failed_and_unavailable_cells_show_their_reason(report):
    html = report["html"].read_text()
    md = report["md"].read_text()
    for text in (html, md):
        assert "xor_single_layer/fake/eager/cpu" in text
        assert "ValueError: injected failure" in text
        assert "pip install -e &#x27;.[ghost]&#x27;" in text or "pip install -e '.[ghost]'" in text
    assert 'class="status-failed"' in html and 'class="status-unavailable"' in html
    # the task with no curve at all says so instead of a figure
    assert "No cell of this task trained an epoch: fake/eager (failed)." in md


def test_markdown_figures_exist_and_csv_has_the_summary(report):
    md = report["md"].read_text()
    for heading in SECTIONS:
        assert f"## {heading}" in md
    images = re.findall(r"!\[[^]]*\]\((figures/[^)]+\.png)\)", md)
    assert "figures/curves_xor.png" in images and "figures/step_time.png" in images
    for image in images:
        assert (report["md"].parent / image).read_bytes().startswith(b"\x89PNG")
    df = pd.read_csv(report["csv"])
    assert list(df["status"]) == ["ok", "unavailable", "failed"]
    assert {"speedup_vs_eager", "equivalence", "time_to_target_s"} <= set(df.columns)
    assert df.loc[0, "equivalence"] == "pass"


def test_environment_and_reproduce_come_from_run_json(report):
    md = report["md"].read_text()
    assert f"```bash\n{COMMAND}\n```" in md
    assert "as recorded in run.json" in md
    assert "numpy " in md and "**precision**: float32" in md and "**threads per cell**" in md


def test_reproduce_falls_back_without_run_json(report, tmp_path):
    records = report["md"].parent / "records.jsonl"
    (tmp_path / "records.jsonl").write_text(records.read_text())
    md = write_report(tmp_path)["md"].read_text()
    assert "reconstructed from the records" in md
    assert "rosetta run --tasks xor,xor_single_layer --frameworks fake,ghost --modes eager" in md


def record(framework, mode, status="ok", median_s=None, curve=(), **kw):
    return {
        "task": "t",
        "framework": framework,
        "mode": mode,
        "device": "cpu",
        "status": status,
        "step_median_s": median_s,
        "step_iqr_s": None if median_s is None else median_s / 10,
        "curve": list(curve),
        "target": {"metric": "accuracy", "value": 0.9},
        **kw,
    }


def test_speedup_is_eager_median_over_graph_median():
    records = [
        record("a", "eager", median_s=0.012),
        record("a", "graph", median_s=0.003),
        record("b", "graph", median_s=0.002),  # no eager cell of b: nothing to compare
        record("c", "eager", median_s=0.010),
        record("c", "graph", "failed", error="boom"),
    ]
    df = summary_table(records)
    speedup = dict(zip(df["framework"] + "/" + df["mode"], df["speedup_vs_eager"], strict=True))
    assert speedup["a/graph"] == pytest.approx(4.0)
    assert pd.isna(speedup["a/eager"]) and pd.isna(speedup["b/graph"])
    assert pd.isna(speedup["c/graph"])
    assert df["equivalence"].isna().all()  # no equivalence.jsonl: no verdicts


def test_equivalence_fails_for_a_framework_with_any_failed_pair():
    checks = [
        {"task": "t", "a": "a/eager", "b": "b/eager", "status": "pass"},
        {"task": "t", "a": "b/eager", "b": "c/eager", "status": "fail"},
    ]
    df = summary_table([record(f, "eager", median_s=0.01) for f in "abcd"], checks)
    assert list(df["equivalence"]) == ["pass", "fail (1 of 2)", "fail (1 of 1)", "not checked"]


def test_hand_made_records_with_partial_and_missing_curves(tmp_path):
    curve = [{"epoch": 1, "train_loss": 1.0, "time_s": 0.1, "test_accuracy": 0.5}]
    records = [
        record("a", "eager", median_s=0.01, curve=curve * 3, first_step_s=0.1),
        record("a", "graph", "diverged", curve=curve, error="loss became nan at epoch 2"),
        record("b", "eager", "timeout", error="no result within 9 s"),
    ]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = write_report(tmp_path)
    md = paths["md"].read_text()
    assert "a/graph (diverged)" not in md  # it has a curve: drawn, not listed as missing
    assert "No curve for: b/eager (timeout)." in md
    assert "**t/b/eager/cpu**: timeout: no result within 9 s" in md
    assert (tmp_path / "figures" / "curves_t.png").is_file()


def test_report_command_without_records_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rosetta: error:") and "has no records.jsonl" in err
    assert "Traceback" not in err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_report_command_writes_and_prints_paths(report, capsys):
    assert main(["report", str(report["html"].parent)]) == 0
    out = capsys.readouterr().out
    assert str(report["html"]) in out and str(report["md"]) in out


def test_report_help_names_its_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = capsys.readouterr().out
    assert "RUN_DIR" in out and "report.html" in out and "equivalence.jsonl" in out


def test_report_imports_with_frameworks_blocked():
    block = (
        "import sys\n"
        "for n in ('torch', 'tensorflow', 'keras', 'jax', 'jaxlib', 'flax', 'optax'):\n"
        "    sys.modules[n] = None\n"
        "import harness.report\n"
    )
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_autoencoder_codes_and_baseline_are_drawn(tmp_path):
    store = ResultStore(tmp_path, command="rosetta run --tasks autoencoder")
    run_matrix([cell("autoencoder")], store, progress=False)
    paths = write_report(tmp_path)
    md = paths["md"].read_text()
    assert "mean image mse = " in md and "the bar to clear" in md
    assert "autoencoder: recorded layer" in md
    assert (tmp_path / "figures" / "layer_autoencoder.png").stat().st_size > 10_000


def test_generated_text_is_shown_escaped(tmp_path):
    sample = {"prompt": "the <b>", "text": "a cat & a dog", "temperature": 0.8, "seed": 0}
    records = [
        record("a", "eager", median_s=0.01, sample=sample),
        record("b", "eager", median_s=0.01, sample={**sample, "text": "a dog"}),
    ]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = write_report(tmp_path)
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert "### t: generated text" in md and "a cat & a dog" in md and "**b/eager**" in md
    assert "a cat &amp; a dog" in page and "<code>the &lt;b&gt;</code>" in page


def test_repeats_collapse_to_one_row_with_their_spread(tmp_path):
    def rep(mode, i, ms, threads=1, **kw):
        return record("a", mode, median_s=ms / 1000, threads=threads, repeat=i, **kw)

    records = [rep("eager", 0, 10.0), rep("eager", 1, 12.0), rep("eager", 2, 11.0)]
    records += [rep("graph", 0, 5.0), rep("graph", 1, 5.5, status="timeout", error="slow")]
    records += [rep("eager", 0, 7.0, threads=2)]
    df = summary_table(records)
    assert len(df) == 3
    eager1 = df[(df["mode"] == "eager") & (df["threads"] == 1)].iloc[0]
    assert eager1["step_median_ms"] == pytest.approx(11.0)
    assert eager1["repeat_spread_pct"] == pytest.approx(100 * 2 / 11)
    graph = df[df["mode"] == "graph"].iloc[0]
    assert graph["status"] == "timeout" and graph["repeats"] == 2  # a failed repeat shows
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    md = write_report(tmp_path)["md"].read_text()
    assert "| threads | repeat spread |" in md
    assert "| 11.0 (1.10) | - | 1 | 18.2% of 3 |" in md  # the median of 10, 12, 11 ms
    assert "repeat spread: the range" in md


def test_threads_and_repeats_plan_separate_processes():
    from harness.api import cells

    plan = cells(tasks=["xor"], frameworks=["torch"], modes=["eager"], threads=[1, 2], repeats=2)
    labels = [c.label for c in plan]
    assert labels == [
        "xor/torch/eager/cpu/t1",
        "xor/torch/eager/cpu/t1/r1",
        "xor/torch/eager/cpu/t2",
        "xor/torch/eager/cpu/t2/r1",
    ]
    with pytest.raises(Exception, match="--repeats must be 1 or more"):
        cells(tasks=["xor"], frameworks=["torch"], repeats=0)


def test_break_even_is_the_compile_cost_over_the_step_saving():
    records = [
        record("a", "eager", median_s=0.012, first_step_s=0.1),
        record("a", "graph", median_s=0.002, first_step_s=2.1),  # 2 s extra, 10 ms a step
        record("b", "eager", median_s=0.002, first_step_s=0.1),
        record("b", "graph", median_s=0.004, first_step_s=1.0),  # slower steps: never
        record("c", "eager", median_s=0.002, first_step_s=1.0),
        record("c", "graph", median_s=0.001, first_step_s=0.5),  # cheaper first step too
    ]
    df = summary_table(records)
    steps = dict(zip(df["framework"] + "/" + df["mode"], df["break_even_steps"], strict=True))
    assert steps["a/graph"] == 200 and np.isinf(steps["b/graph"]) and steps["c/graph"] == 0
    assert pd.isna(steps["a/eager"])
    shown = display_table(df)["break-even steps"].tolist()
    assert shown == ["-", "200", "-", "never", "-", "0"]


def test_final_agreement_measures_the_spread_against_the_stated_tolerance(tmp_path):
    from harness.report.tables import display_agreement, final_agreement

    def cell_of(fw, mode, accuracy, status="ok", init="shared", task="t"):
        return {
            **record(fw, mode, status, median_s=0.01, init=init),
            "task": task,
            "metrics": {"accuracy": accuracy},
        }

    records = [
        cell_of("a", "eager", 0.970),
        cell_of("b", "eager", 0.975),
        cell_of("c", "eager", 0.972),
        cell_of("a", "graph", 0.970),
        cell_of("b", "graph", 0.990),
        cell_of("c", "graph", 0.10, status="failed"),  # not finished: not counted
        cell_of("a", "eager", 0.5, task="u"),
        cell_of("b", "eager", 0.6, task="u"),
        cell_of("a", "eager", 0.5, task="native", init="native"),
        cell_of("b", "eager", 0.9, task="native", init="native"),  # own inits: not compared
        cell_of("a", "eager", 0.9, task="alone"),  # one framework: nothing to compare
    ]
    df = final_agreement(summary_table(records), {"t": (0.01, "rounding"), "u": (None, "")})
    rows = {(r.task, r.mode): r for r in df.itertuples()}
    assert set(rows) == {("t", "eager"), ("t", "graph"), ("u", "eager")}
    assert rows[("t", "eager")].spread == pytest.approx(0.005)
    assert rows[("t", "eager")].status == "pass" and rows[("t", "eager")].frameworks == "a, b, c"
    assert rows[("t", "graph")].spread == pytest.approx(0.02)
    assert rows[("t", "graph")].status == "fail" and rows[("t", "graph")].frameworks == "a, b"
    assert rows[("u", "eager")].status == "not stated"
    shown = display_agreement(df)
    assert list(shown["spread"]) == ["0.005", "0.02", "0.1"]
    assert list(shown["tolerance"]) == ["0.01", "0.01", "-"]


def test_the_report_shows_the_final_agreement_with_the_task_files_tolerance(tmp_path):
    from harness.spec import resolve_task

    curve = [{"epoch": 1, "train_loss": 1.0, "time_s": 0.1, "test_accuracy": 0.5}]
    records = [
        {
            **record(fw, "eager", median_s=0.01, curve=curve),
            "task": "lenet",
            "init": "shared",
            "metrics": {"accuracy": acc},
        }
        for fw, acc in (("torch", 0.97), ("jax", 0.971))
    ]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = write_report(tmp_path)
    md = paths["md"].read_text()
    summary, _ = md.split("## Cells that did not finish")
    assert "### Final metrics across frameworks" in summary
    tol = resolve_task("lenet").tolerance
    assert (
        f"| lenet | eager | accuracy | torch, jax | 0.97 | 0.971 | 0.001 | {tol.final:g} | pass |"
        in md
    )
    assert 'id="agreement"' in paths["html"].read_text()


def test_a_task_without_a_target_shows_no_time_to_target():
    records = [
        record("a", "eager", median_s=0.01, target=None, time_to_target_s=None),
        record("a", "graph", median_s=0.01, time_to_target_s=None),  # a target, missed
    ]
    shown = display_table(summary_table(records))
    assert list(shown["to target s"]) == ["-", "not reached"]
    assert list(shown["to target epochs"]) == ["-", "not reached"]

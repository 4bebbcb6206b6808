"""The lesson pages' link to the reference run: cited numbers, generated blocks,
uncited numbers; and the committed pages against the committed reference run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.docs import DocsError, Reference, problems, refresh, uncited
from harness.report.tables import summary_table


def _record(task, fw, mode, accuracy, step_s, first_s, traces=0):
    return {
        "task": task,
        "framework": fw,
        "mode": mode,
        "device": "cpu",
        "status": "ok",
        "metrics": {"accuracy": accuracy},
        "stats": {"traces": traces},
        "init": "shared",
        "curve": [{"epoch": 1, "test_loss": 0.9}, {"epoch": 2, "test_loss": 0.5}],
        "versions": {fw: "1.0"},
        "weights": {"fc.kernel": [[0.25]], "fc.bias": [0.5]},
        "step_median_s": step_s,
        "step_iqr_s": step_s / 10,
        "first_step_s": first_s,
        "target": {"metric": "accuracy", "value": 0.95},
        "time_to_target_s": 1.5,
        "epochs_to_target": 2,
    }


@pytest.fixture
def ref_dir(tmp_path: Path) -> Path:
    """A reference folder written as `rosetta reference` writes one: records, the
    report's CSV (summary_table, as write_report saves it), checks, lessons."""
    ref = tmp_path / "reference"
    ref.mkdir()
    records = [
        _record("lenet", "torch", "eager", 0.97125, 0.006, 0.01),
        _record("lenet", "torch", "graph", 0.97125, 0.012, 9.0, traces=1),
        _record("lenet", "jax", "graph", 0.9702, 0.004, 0.5, traces=1),
    ]
    (ref / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    checks = [
        {
            "task": "lenet",
            "dtype": "float32",
            "a": "torch/eager",
            "b": "jax/graph",
            "status": "pass",
            "max_rel": 3e-6,
        },
        {
            "task": "lenet",
            "dtype": "float32",
            "a": "torch/eager",
            "b": "tf/graph",
            "status": "pass",
            "max_rel": 8e-6,
        },
    ]
    (ref / "equivalence.jsonl").write_text("".join(json.dumps(r) + "\n" for r in checks))
    summary_table(records, checks).to_csv(ref / "report.csv", index=False)
    lessons = [
        {
            "lesson": "autograd",
            "framework": "torch",
            "status": "ok",
            "version": "torch 1.0",
            "values": {
                "grad_once": [[1.5, 1.5], [1.5, 1.5]],
                "grad_twice": [[3.0, 3.0], [3.0, 3.0]],
            },
        },
    ]
    (ref / "lessons.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lessons))
    (ref / "figures").mkdir()
    (ref / "figures" / "curves_lenet.png").write_bytes(b"png")
    return ref


def test_cited_numbers_are_rewritten_from_the_reference(ref_dir):
    ref = Reference.load(ref_dir)
    page = (
        "Accuracy 0.5<!--ref run/lenet/torch/graph/metrics.accuracy .3f--> after "
        "9<!--ref run/lenet/torch/graph/stats.traces--> trace; last test loss "
        "1<!--ref run/lenet/torch/eager/curve.-1.test_loss-->; compiled steps are "
        "2x<!--ref summary/lenet/torch/graph/speedup_vs_eager .2f--> as fast; break-even "
        "0<!--ref summary/lenet/torch/graph/break_even_steps-->; worst difference "
        "1<!--ref check/lenet/float32/*/*/max_rel max .0e-->, pair in either order "
        "x<!--ref check/lenet/float32/jax.graph/torch.eager/status-->; "
        "2<!--ref run/lenet/*/graph/metrics.accuracy count--> graph cells; one call "
        "0<!--ref lesson/autograd/torch/grad_once.0.0-->; kernel "
        "0<!--ref run/lenet/torch/eager/weights.fc.kernel.0.0-->."
    )
    assert refresh(page, ref) == (
        "Accuracy 0.971<!--ref run/lenet/torch/graph/metrics.accuracy .3f--> after "
        "1<!--ref run/lenet/torch/graph/stats.traces--> trace; last test loss "
        "0.5<!--ref run/lenet/torch/eager/curve.-1.test_loss-->; compiled steps are "
        "0.50<!--ref summary/lenet/torch/graph/speedup_vs_eager .2f--> as fast; break-even "
        "never<!--ref summary/lenet/torch/graph/break_even_steps-->; worst difference "
        "8e-06<!--ref check/lenet/float32/*/*/max_rel max .0e-->, pair in either order "
        "pass<!--ref check/lenet/float32/jax.graph/torch.eager/status-->; "
        "2<!--ref run/lenet/*/graph/metrics.accuracy count--> graph cells; one call "
        "1.5<!--ref lesson/autograd/torch/grad_once.0.0-->; kernel "
        "0.25<!--ref run/lenet/torch/eager/weights.fc.kernel.0.0-->."
    )


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("run/lenet/tf/graph/metrics.accuracy", "no such cell"),
        ("run/lenet/torch/graph/metrics.f1", "no such cell or field"),
        ("run/lenet/*/graph/metrics.accuracy", "say max, min or count"),
        ("check/lenet/float64/*/*/max_rel", "no such equivalence record"),
        ("bench/lenet/x", "unknown source 'bench'"),
        ("run/lenet/torch", "needs 3 names and a field"),
    ],
)
def test_a_key_the_reference_lacks_is_an_error_naming_it(ref_dir, key, why):
    with pytest.raises(DocsError, match=why) as err:
        refresh(f"0.9<!--ref {key}-->", Reference.load(ref_dir))
    assert key in str(err.value)


def test_a_hand_changed_number_is_a_problem(ref_dir, tmp_path):
    ref = Reference.load(ref_dir)
    page = tmp_path / "page.md"
    good = "LeNet reaches 0.9712<!--ref run/lenet/torch/graph/metrics.accuracy .4f-->.\n"
    page.write_text(good)
    assert problems(page, ref) == []
    page.write_text(good.replace("0.9712", "0.9800"))
    [problem] = problems(page, ref)
    assert "page.md:1: differs from the reference run" in problem


def test_uncited_measurements_are_found_and_the_rest_is_not():
    page = "\n".join(
        [
            "It reached 0.97 accuracy in 6.1 ms per step, 2x faster, 30% of the peak;",
            "cited 0.9<!--ref run/a/b/c/d--> is fine, so are `lr=0.01`, §2.4 and 28x28,",
            "kernels 3, 4, 5, ![plot](../results/reference/figures/curves_1.5.png)",
            "```python",
            "x = 0.5 * y",
            "```",
            "<!-- begin measured lenet -->",
            "| 0.97 | 6.1 ms |",
            "<!-- end -->",
            "<!-- a comment with 1.5 -->",
            "ten 2.5 s epochs",
        ]
    )
    assert uncited(page) == [(1, "0.97"), (1, "6.1 ms"), (1, "2x"), (1, "30%"), (11, "2.5 s")]


def test_generated_blocks(ref_dir, tmp_path):
    ref = Reference.load(ref_dir)
    page_dir = tmp_path / "docs"
    page_dir.mkdir()
    text = (
        "<!-- begin measured lenet -->\nold\n<!-- end -->\n"
        "<!-- begin spec lenet -->\n<!-- end -->\n"
        "<!-- begin source harness/report/docs.py show -->\n<!-- end -->\n"
        "<!-- begin lesson autograd -->\n<!-- end -->\n"
        "<!-- begin summary -->\n<!-- end -->\n"
        "<!-- begin source harness/report/docs.py show 'if isinstance(value, float) and' -->\n"
        "<!-- end -->\n"
    )
    out = refresh(text, ref, page_dir)
    measured = out.split("<!-- end -->")[0]
    assert "old" not in measured
    assert (
        "| torch | graph | ok | accuracy 0.9712 | 1.50 | 2 | 9.00 | 12.0 (1.20) | 0.50x | never | pass |"
        in measured
    )
    assert "![lenet: curves](../reference/figures/curves_lenet.png)" in measured
    assert 'name = "lenet"' in out and "```toml" in out
    assert 'def show(value: Any, spec: str = "") -> str:' in out
    assert "| dt/dx, 1 call | [[1.5, 1.5], [1.5, 1.5]] |" in out
    assert "| task | metric | torch eager | torch graph | jax graph |" in out
    assert "| lenet | accuracy | 0.9712 · 6.00 ms | 0.9712 · 12.0 ms | 0.9702 · 4.00 ms |" in out
    last = out.split("<!-- begin source harness/report/docs.py show 'if")[1]
    assert (
        '```python\nif isinstance(value, float) and math.isinf(value):\n    return "never"\n```'
        in last
    )
    assert refresh(out, ref, page_dir) == out  # a second refresh changes nothing


@pytest.mark.parametrize(
    ("block", "why"),
    [
        ("measured resnet", "no cell of 'resnet'"),
        ("spec no_such_task", "no such built-in task"),
        ("source harness/report/docs.py no_such_function", "has no 'no_such_function'"),
        ("source no/such.py f", "no such file"),
        ("source harness/report/docs.py show 'while True'", "no statement there starts with"),
        ("lesson shapes", "rosetta lesson shapes --out"),
        ("picture lenet", "known blocks are"),
    ],
)
def test_a_bad_block_is_an_error_naming_it(ref_dir, block, why):
    with pytest.raises(DocsError, match=why):
        refresh(f"<!-- begin {block} -->\n<!-- end -->\n", Reference.load(ref_dir))


def test_a_missing_reference_says_how_to_make_one(tmp_path):
    with pytest.raises(DocsError, match="rosetta reference"):
        Reference.load(tmp_path)

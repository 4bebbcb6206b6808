"""The report's tables: the summary (with graph speed-ups and equivalence verdicts),
as raw numbers and as shown, and the cells that did not finish."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from harness.results import summary

Record = dict[str, Any]

NOTE_CHARS = 90  # the table's note column; the full reason is in its own section


CELL_KEY = ["task", "framework", "mode", "device", "threads"]


def latest_per_cell(records: list[Record]) -> tuple[list[Record], int]:
    """The last record of each cell and repeat (a folder re-run with ``--out``
    appends), and how many earlier ones it superseded."""
    latest: dict[tuple, Record] = {}
    for r in records:
        key = (
            *(r.get(k) for k in ("task", "framework", "mode", "device")),
            r.get("threads", 0),
            r.get("repeat", 0),
        )
        latest.pop(key, None)  # re-insert so the order is the latest run's
        latest[key] = r
    return list(latest.values()), len(records) - len(latest)


def summary_table(records: list[Record], equivalence: list[Record] | None = None) -> pd.DataFrame:
    """The run's summary with the report's columns: raw numbers, one row per cell.

    Args:
        records: the run's cell records.
        equivalence: ``equivalence.jsonl`` records, or None where the run has none.

    Returns:
        :func:`harness.results.summary` plus ``target``, ``speedup_vs_eager`` (eager
        median step / this mode's, same task, framework and device) and
        ``equivalence`` (None where no check was run).
    """
    df = summary(records)
    df["target"] = [target_text(r.get("target")) for r in records]
    df = collapse_repeats(df)
    df["speedup_vs_eager"] = speedups(df)
    df["break_even_steps"] = break_even(df)
    verdicts = equivalence_verdicts(equivalence) if equivalence is not None else {}
    df["equivalence"] = [
        verdicts.get((t, f), "not checked") if equivalence is not None else None
        for t, f in zip(df["task"], df["framework"], strict=True)
    ]
    return df


def collapse_repeats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell where cells ran in several processes (``--repeats``): the
    median over the repeats of each timing, ``repeats`` (how many ran) and
    ``repeat_spread_pct``, the range of the repeats' median step times over their
    median. A repeat that did not finish gives the row its status and reason."""
    rows = []
    for _, group in df.groupby(CELL_KEY, sort=False, dropna=False):
        ok = group[group["status"] == "ok"]
        failed = group[group["status"] != "ok"]
        row = (failed if not failed.empty else group).iloc[0].copy()
        if not ok.empty:
            for column in (
                "step_median_ms",
                "step_iqr_ms",
                "first_step_s",
                "total_s",
                "time_to_target_s",
                "test_value",
                "final_train_loss",
            ):
                row[column] = ok[column].median()
        medians = ok["step_median_ms"].dropna()
        row["repeats"] = len(group)
        row["repeat_spread_pct"] = (
            100 * (medians.max() - medians.min()) / medians.median() if len(medians) > 1 else None
        )
        rows.append(row)
    out = pd.DataFrame(rows).reset_index(drop=True)
    return out.astype({"repeat_spread_pct": float}) if not out.empty else out


def speedups(df: pd.DataFrame) -> pd.Series:
    """Eager median step time over each other mode's, for cells that finished."""
    key = ["task", "framework", "device", "threads"]
    ok = df["status"] == "ok"
    eager = df[ok & (df["mode"] == "eager")].drop_duplicates(key, keep="last")
    base = df[key].merge(eager[[*key, "step_median_ms"]], on=key, how="left")["step_median_ms"]
    ratio = base.to_numpy(dtype=float) / df["step_median_ms"].to_numpy(dtype=float)
    return pd.Series(ratio, index=df.index).where(ok & (df["mode"] != "eager"))


def break_even(df: pd.DataFrame) -> pd.Series:
    """For a graph mode: after how many steps its extra first-step (compile) cost is
    paid back by faster steps, ``(first - first_eager) / (median_eager - median)``;
    inf where its steps are not faster, 0 where its first step costs no more."""
    key = ["task", "framework", "device", "threads"]
    ok = df["status"] == "ok"
    eager = df[ok & (df["mode"] == "eager")].drop_duplicates(key, keep="last")
    base = df[key].merge(eager[[*key, "step_median_ms", "first_step_s"]], on=key, how="left")
    extra = df["first_step_s"].to_numpy(float) - base["first_step_s"].to_numpy(float)
    saved = (base["step_median_ms"].to_numpy(float) - df["step_median_ms"].to_numpy(float)) / 1000
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.where(extra <= 0, 0.0, np.where(saved > 0, np.ceil(extra / saved), np.inf))
    return pd.Series(steps, index=df.index).where(
        ok & (df["mode"] != "eager") & base["first_step_s"].notna()
    )


def equivalence_verdicts(records: list[Record]) -> dict[tuple[str, str], str]:
    """``(task, framework) -> "pass"`` when every check record naming that framework
    passed, else ``"fail (k of n)"``."""
    passed: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in records:
        for framework in {r["a"].split("/")[0], r["b"].split("/")[0]}:
            passed[(r["task"], framework)].append(r.get("status") == "pass")
    return {
        key: "pass" if all(ok) else f"fail ({ok.count(False)} of {len(ok)})"
        for key, ok in passed.items()
    }


def final_agreement(
    df: pd.DataFrame, tolerances: dict[str, tuple[float | None, str]]
) -> pd.DataFrame:
    """How far apart the frameworks end: per task, mode and device, the spread
    (largest minus smallest) of the headline test metric over the cells that finished,
    against the task's ``tolerance.final``.

    Args:
        df: :func:`summary_table`'s rows.
        tolerances: task -> (``tolerance.final``, its why); a task missing here or with
            None has no stated tolerance.

    Returns:
        One row per task, mode and device with two or more finished frameworks started
        from the shared weights: ``metric``, ``frameworks``, ``lowest``, ``highest``,
        ``spread``, ``tolerance``, ``status`` (pass, fail or not stated), ``why``.
    """
    rows = []
    ok = df[(df["status"] == "ok") & df["test_value"].notna()]
    if "init" in ok:
        ok = ok[ok["init"].fillna("shared") == "shared"]
    for (task, mode, device), group in ok.groupby(["task", "mode", "device"], sort=False):
        if group["framework"].nunique() < 2:
            continue
        tol, why = tolerances.get(task, (None, ""))
        spread = float(group["test_value"].max() - group["test_value"].min())
        status = "not stated" if tol is None else "pass" if spread <= tol + 1e-12 else "fail"
        rows.append(
            {
                "task": task,
                "mode": mode,
                "device": device,
                "metric": group["test_metric"].iloc[0],
                "frameworks": ", ".join(group["framework"]),
                "lowest": float(group["test_value"].min()),
                "highest": float(group["test_value"].max()),
                "spread": spread,
                "tolerance": tol,
                "status": status,
                "why": why,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "task",
            "mode",
            "device",
            "metric",
            "frameworks",
            "lowest",
            "highest",
            "spread",
            "tolerance",
            "status",
            "why",
        ],
    )


def display_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`final_agreement` as the report shows it."""
    show = df.drop(columns=["device"] if df["device"].nunique() <= 1 else [])
    for column in ("lowest", "highest"):
        show[column] = df[column].map(lambda v: f"{v:.6g}")
    show["spread"] = df["spread"].map(lambda v: f"{v:.2g}")
    show["tolerance"] = df["tolerance"].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:g}")
    return show


def target_text(target: dict[str, Any] | None) -> str | None:
    """A task's target as the report writes it (``accuracy >= 0.95``); None for none."""
    if not target:
        return None
    sense = "<=" if target["metric"] in ("mse", "loss") else ">="
    return f"{target['metric']} {sense} {target['value']:g}"


def num(value: Any) -> str:
    """A number with the digits that matter at its size; ``-`` for a missing one."""
    if value is None or pd.isna(value):
        return "-"
    size = abs(value)
    if 0 < size < 0.001:
        return f"{value:.1e}"  # a fast cell must not read as zero
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{value:.{digits}f}"


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The summary as the report shows it: formatted strings, readable headers."""
    show = pd.DataFrame(
        {
            "task": df["task"],
            "framework": df["framework"],
            "mode": df["mode"],
            "device": df["device"],
            "status": df["status"],
            "test metric": [
                f"{m} {v:.4f}" if isinstance(m, str) and pd.notna(v) else "-"
                for m, v in zip(df["test_metric"], df["test_value"], strict=True)
            ],
            "to target s": [_to_target(r, r.time_to_target_s, num) for r in df.itertuples()],
            "to target epochs": [
                _to_target(r, r.epochs_to_target, lambda v: f"{v:.0f}") for r in df.itertuples()
            ],
            "first step s": df["first_step_s"].map(num),
            "step ms median (IQR)": [
                "-" if pd.isna(m) else f"{num(m)} ({num(q)})" + (" †" if b else "")
                for m, q, b in zip(
                    df["step_median_ms"], df["step_iqr_ms"], shared_slots(df), strict=True
                )
            ],
            "graph speed-up": df["speedup_vs_eager"].map(
                lambda v: "-" if pd.isna(v) else f"{v:.2f}x"
            ),
            "break-even steps": df["break_even_steps"].map(_steps),
            "threads": df["threads"].map(lambda t: "default" if not t else str(int(t))),
            "repeat spread": [
                "-" if pd.isna(p) else f"{p:.1f}% of {n}"
                for p, n in zip(df["repeat_spread_pct"], df["repeats"], strict=True)
            ],
            "equivalence": df["equivalence"].fillna("-"),
            "note": df["error"].map(_note),
        }
    )
    if df["device"].nunique() <= 1:
        show = show.drop(columns="device")
    if df["break_even_steps"].isna().all():
        show = show.drop(columns="break-even steps")
    if df["threads"].nunique() <= 1:
        show = show.drop(columns="threads")
    if (df["repeats"] <= 1).all():
        show = show.drop(columns="repeat spread")
    if df["equivalence"].isna().all():
        show = show.drop(columns="equivalence")
    if not show["note"].any():
        show = show.drop(columns="note")
    return show


def shared_slots(df: pd.DataFrame) -> list[bool]:
    """Whether each row's steps were timed while other cells ran beside it (``--jobs``)."""
    if "beside" not in df:
        return [False] * len(df)
    return [bool(b) and pd.notna(b) for b in df["beside"]]


def _steps(value: Any) -> str:
    if pd.isna(value):
        return "-"
    return "never" if np.isinf(value) else f"{value:,.0f}"


def _to_target(row: Any, value: Any, fmt) -> str:
    if pd.notna(value):
        return fmt(value)
    # "not reached" only means something for a cell that finished and had a target
    # (a missing target is NaN in the frame, which is truthy: ask for the text)
    return "not reached" if row.status == "ok" and isinstance(row.target, str) else "-"


def _note(error: Any) -> str:
    if not isinstance(error, str) or not error:
        return ""
    return error if len(error) <= NOTE_CHARS else error[: NOTE_CHARS - 3] + "..."


def not_finished(records: list[Record]) -> list[dict[str, str]]:
    """The cells whose status is not ``ok``: label, status, the reason's first line, all of it."""
    out = []
    for r in records:
        if r.get("status") == "ok":
            continue
        error = (r.get("error") or "no reason recorded").strip()
        out.append(
            {
                "cell": f"{r['task']}/{r['framework']}/{r['mode']}/{r.get('device', 'cpu')}",
                "status": r.get("status", "?"),
                "reason": error.splitlines()[0],
                "detail": error,
            }
        )
    return out

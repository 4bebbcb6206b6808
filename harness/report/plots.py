"""The report's figures, drawn with matplotlib's object API on the Agg canvas
(no pyplot: no global state, no display, nothing left open after a report)."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from harness.backend import BACKENDS
from harness.report.tables import num

Record = dict[str, Any]

# weight of the newest epoch in the smoothed curve: lower smooths more but lags more,
# and most tasks train for only 10-40 epochs
EWM_ALPHA = 0.5
DPI = 110
OTHER_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
MODE_LINES = {"eager": "-", "graph": "--", "xla": ":"}
MODE_BARS = {"eager": "#9ecae1", "graph": "#2b6ca3", "xla": "#8c6bb1"}
FAILED_COLOR = "#b2182b"


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, rendered by the Agg canvas."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def framework_color(name: str, order: list[str]) -> str:
    """The framework's colour, the same in every figure of a report."""
    declared = {n: info.color for n, info in BACKENDS.items() if info.color}
    if name in declared:
        return declared[name]
    others = [n for n in order if n not in declared]
    return OTHER_COLORS[others.index(name) % len(OTHER_COLORS)]


def headline_metric(records: list[Record]) -> str | None:
    """The test metric a task is judged by: its target's, else accuracy, mse, loss."""
    target = next((r["target"]["metric"] for r in records if r.get("target")), None)
    keys = {k for r in records for p in r.get("curve") or [] for k in p}
    for name in (target, "accuracy", "mse", "loss"):
        if name and f"test_{name}" in keys:
            return name
    return None


def _smoothed(ax, x, y, color, style, label, alpha) -> None:
    # to_numpy: a Series index= argument would align on labels instead of pairing
    series = pd.Series(np.asarray(y, dtype=float), index=np.asarray(x)).dropna()
    if series.empty:
        return
    marker = "o" if len(series) <= 50 else None  # a short curve's epochs are worth seeing
    ax.plot(
        series.index,
        series.values,
        color=color,
        linestyle=style,
        lw=1,
        alpha=0.35,
        marker=marker,
        markersize=3,
    )
    smooth = series.ewm(alpha=alpha).mean()
    ax.plot(smooth.index, smooth.values, color=color, linestyle=style, lw=2, label=label)


def _log_if_wide(ax, values: list[float]) -> None:
    # a loss that falls by orders of magnitude is flat on a linear axis after epoch 1
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) >= 100:
        ax.set_yscale("log")


def learning_curves(task_records: list[Record], alpha: float = EWM_ALPHA) -> Figure | None:
    """Train loss, test loss and the test metric per epoch, every framework x mode of
    one task; the two loss panels share their scale, so over-fitting (train falling
    while test rises) shows as a gap.

    Args:
        task_records: the records of one task; cells without a curve are skipped.
        alpha: the exponentially weighted mean's weight of the newest epoch.

    Returns:
        A figure with two or three panels, or None when no cell has a curve.
    """
    drawn = [r for r in task_records if r.get("curve")]
    if not drawn:
        return None
    metric = headline_metric(drawn)
    keys = {k for r in drawn for p in r["curve"] for k in p}
    test_loss = "test_loss" in keys and metric != "loss"
    order = list(dict.fromkeys(r["framework"] for r in task_records))
    fig = Figure(figsize=(14 if test_loss else 11, 4.4), layout="constrained")
    axes = fig.subplots(1, 3 if test_loss else 2)
    ax_loss, ax_metric = axes[0], axes[-1]
    ax_test = axes[1] if test_loss else None
    if ax_test is not None:
        ax_test.sharey(ax_loss)
    losses: list[float] = []
    for r in drawn:
        curve = pd.DataFrame(r["curve"])
        color = framework_color(r["framework"], order)
        style = MODE_LINES.get(r["mode"], "-.")
        label = f"{r['framework']} {r['mode']}" + (
            "" if r["status"] == "ok" else f" ({r['status']})"
        )
        _smoothed(ax_loss, curve["epoch"], curve["train_loss"], color, style, label, alpha)
        losses += curve["train_loss"].tolist()
        if ax_test is not None and "test_loss" in curve:
            _smoothed(ax_test, curve["epoch"], curve["test_loss"], color, style, None, alpha)
            losses += curve["test_loss"].tolist()
        if metric and f"test_{metric}" in curve:
            _smoothed(ax_metric, curve["epoch"], curve[f"test_{metric}"], color, style, None, alpha)
    _log_if_wide(ax_loss, losses)
    if ax_test is not None:
        ax_test.set(title="test loss (after each evaluated epoch)", xlabel="epoch")
        ax_test.grid(alpha=0.3)
    # an unavailable cell's record has no target: describe the task from a fuller one
    described = next((r for r in task_records if r.get("target")), task_records[0])
    _decorate(fig, ax_loss, ax_metric, described, metric, alpha)
    _draw_baselines(ax_metric, described, metric)
    return fig


def _draw_baselines(ax, record: Record, metric: str | None) -> None:
    for name, value in (record.get("baselines") or {}).items():
        if metric and metric in name:
            ax.axhline(value, color=FAILED_COLOR, lw=1, linestyle="--")
            ax.annotate(
                name.replace("_", " "),
                (0.01, value),
                xycoords=("axes fraction", "data"),
                color=FAILED_COLOR,
                fontsize=8,
                va="bottom",
            )


def layer_scatter(task_records: list[Record]) -> Figure | None:
    """A recorded 2-d layer (an autoencoder's code) on the test set, one panel per
    framework x mode, points coloured by class."""
    drawn = [
        r
        for r in task_records
        if r.get("layer_outputs") and len((r["layer_outputs"]["values"] or [[]])[0]) == 2
    ]
    if not drawn:
        return None
    fig = Figure(figsize=(max(4.8, min(3.2 * len(drawn), 13)), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(drawn), squeeze=False)[0])
    for ax, r in zip(axes, drawn, strict=True):
        values = np.asarray(r["layer_outputs"]["values"], dtype=float)
        labels = np.asarray(r["layer_outputs"]["labels"])
        points = ax.scatter(values[:, 0], values[:, 1], c=labels, cmap="tab10", s=6)
        ax.set_title(f"{r['framework']} {r['mode']}", fontsize=10)
        ax.tick_params(labelsize=7)
    fig.colorbar(points, ax=list(axes), label="class", shrink=0.8)
    layer = drawn[0]["layer_outputs"]["layer"]
    fig.suptitle(f"{drawn[0]['task']}: layer '{layer}' on the test set", fontsize=12)
    return fig


def _decorate(fig, ax_loss, ax_metric, record: Record, metric: str | None, alpha: float) -> None:
    ax_loss.set(title="train loss (mean over the epoch's steps)", xlabel="epoch", ylabel="loss")
    ax_metric.set(
        title=f"test {metric}" if metric else "no test metric recorded",
        xlabel="epoch",
        ylabel=metric or "",
    )
    target = record.get("target")
    if target and target["metric"] == metric:
        ax_metric.axhline(target["value"], color="0.4", lw=1, linestyle=(0, (1, 2)))
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    handles, labels = ax_loss.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.3", lw=1, alpha=0.35, marker="o", markersize=3),
        Line2D([], [], color="0.3", lw=2),
    ]
    labels += ["raw, per epoch", f"smoothed (EWM, alpha={alpha:g})"]
    if target and target["metric"] == metric:
        handles.append(Line2D([], [], color="0.4", lw=1, linestyle=(0, (1, 2))))
        labels.append(f"target {target['value']:g}")
    # two rows: with every framework in both modes, a column per framework
    ncols = min(math.ceil(len(labels) / 2), 6)
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)
    title = record["task"] + (f": {record['title']}" if record.get("title") else "")
    fig.suptitle(title, fontsize=13)


def bar_facets(
    df: pd.DataFrame, value: str, ylabel: str, title: str, iqr: str | None = None
) -> Figure | None:
    """One panel per task: a bar per framework x mode, cells that did not finish named.

    Args:
        df: the report's summary table (one row per cell, raw numbers).
        value: the column the bars show.
        ylabel: the y axis' label.
        title: the figure's title.
        iqr: the column of each bar's interquartile range, drawn as a whisker centred
            on the bar's top; None for no whiskers.

    Returns:
        The figure, or None when the table is empty.
    """
    if df.empty:
        return None
    tasks = list(dict.fromkeys(df["task"]))
    modes = list(dict.fromkeys(df["mode"]))
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.9 * nrows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, task in zip(axes, tasks, strict=False):
        _bars(ax, df[df["task"] == task], modes, value, iqr)
        ax.set_title(task, fontsize=10)
    for ax in axes[: len(tasks) : ncols]:
        ax.set_ylabel(ylabel)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    handles = [Patch(color=MODE_BARS.get(m, "0.6"), label=m) for m in modes]
    if iqr:
        handles.append(Line2D([], [], color="0.2", lw=1, marker="_", label="IQR (steady steps)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(title, fontsize=13)
    return fig


def _bars(ax, task_df: pd.DataFrame, modes: list[str], value: str, iqr: str | None) -> None:
    devices = task_df["device"].nunique() > 1
    sweep = task_df["threads"].nunique() > 1
    groups = list(
        dict.fromkeys(zip(task_df["framework"], task_df["device"], task_df["threads"], strict=True))
    )
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        for i, (framework, device, threads) in enumerate(groups):
            rows = task_df[
                (task_df["framework"] == framework)
                & (task_df["device"] == device)
                & (task_df["threads"] == threads)
                & (task_df["mode"] == mode)
            ]
            if rows.empty:
                continue
            row, x = rows.iloc[-1], i + (j - (len(modes) - 1) / 2) * width
            if row["status"] != "ok" or pd.isna(row[value]):
                # no bar to draw: say why where the bar would stand
                ax.text(
                    x,
                    0,
                    f" {row['status']}",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color=FAILED_COLOR,
                )
                continue
            err = None if iqr is None or pd.isna(row[iqr]) else row[iqr] / 2
            bars = ax.bar(
                x,
                row[value],
                width,
                color=MODE_BARS.get(mode, "0.6"),
                yerr=err,
                capsize=2,
                error_kw={"lw": 0.8},
            )
            ax.bar_label(bars, labels=[num(row[value])], fontsize=7, padding=2)
    labels = [
        f + (f"\n{d}" if devices else "") + (f"\n{t or 'default'} thr" if sweep else "")
        for f, d, t in groups
    ]
    ax.set_xticks(range(len(groups)), labels)
    ax.set_xlim(-0.5, len(groups) - 0.5)  # room for a cell's "failed" label at the edges
    ax.margins(y=0.18)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)


def scaling_figure(df: pd.DataFrame, half: float) -> Figure:
    """``rosetta bench``'s scaling rows: step time and GFLOP/s against the batch size,
    a line per framework x mode, and, where the rows have it, the fraction of the
    mode's own matmul ceiling, with a line at ``half`` of it."""
    fractions = "fraction" in df and df["fraction"].notna().any()
    fig = Figure(figsize=(15 if fractions else 11, 4.2), layout="constrained")
    axes = fig.subplots(1, 3 if fractions else 2)
    ax_time, ax_flops = axes[:2]
    order = list(dict.fromkeys(df["framework"]))
    for (framework, mode), part in df.groupby(["framework", "mode"], sort=False):
        part = part.sort_values("batch")
        style = {
            "color": framework_color(framework, order),
            "linestyle": MODE_LINES.get(mode, "-."),
            "marker": "o",
            "label": f"{framework} {mode}",
        }
        ax_time.plot(part["batch"], part["best_step_ms"], **style)
        ax_flops.plot(part["batch"], part["achieved_gflops"], **style)
        if fractions:
            axes[2].plot(part["batch"], part["fraction"], **style)
    ax_time.set(
        xscale="log",
        yscale="log",
        xlabel="batch size",
        ylabel="ms per step",
        title="step time (fastest turn)",
    )
    ax_flops.set(
        xscale="log",
        xlabel="batch size",
        ylabel="GFLOP/s",
        title="achieved FLOP/s (matrix products)",
    )
    if fractions:
        axes[2].axhline(half, color="0.4", linewidth=0.8, linestyle=":")
        axes[2].set(
            xscale="log",
            xlabel="batch size",
            ylabel="step FLOP/s / matmul FLOP/s",
            title="fraction of the mode's own matmul",
            ylim=(0, 1),
        )
    for ax in axes:
        ax.grid(alpha=0.3)
    ax_flops.legend(frameon=False, fontsize=8)
    fig.suptitle("Scaling with the batch size: the MLP", fontsize=13)
    return fig

"""The report's content, written as one self-contained HTML page (figures inlined
as base64 PNG, styles inline, nothing fetched) or as Markdown with PNG files."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

import pandas as pd

SECTIONS = (
    "Summary",
    "Cells that did not finish",
    "Learning curves",
    "Step time",
    "First step (compile)",
    "Environment",
    "Reproduce",
)
AGREEMENT = "Final metrics across frameworks"


SAMPLES_NOTE = (
    "Sampled one character at a time after training, with the same random numbers in "
    "every cell: cells whose models agree write the same text, and a framework that "
    "parts from the others shows where."
)


@dataclass(frozen=True)
class Image:
    """One figure: its file name under ``figures/``, heading, caption, and PNG bytes
    (None when there was nothing to draw; the caption says why)."""

    name: str
    heading: str
    caption: str
    png: bytes | None


@dataclass(frozen=True)
class Content:
    """Everything a report says, ready for either renderer."""

    title: str
    intro: str
    table: pd.DataFrame  # display strings, see tables.display_table
    table_notes: list[str]
    not_finished: list[dict[str, str]]
    curves: list[Image]
    step_time: Image
    first_step: Image
    environment: list[tuple[str, str]]
    tasks: pd.DataFrame
    command: str
    command_note: str
    notes: list[str] = field(default_factory=list)
    # final_agreement's rows, as shown, and what they mean
    agreement: pd.DataFrame | None = None
    agreement_note: str = ""
    # a language model's writing: {"task", "cell", "prompt", "text"} per cell
    samples: list[dict[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- Markdown


def markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def cell(v) -> str:
        return "-" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)

    rows = [[cell(v).replace("|", "\\|") for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _md_image(image: Image, level: str) -> list[str]:
    head = [f"{level} {image.heading}", ""] if image.heading else []
    if image.png is None:
        return [*head, f"_{image.caption}_", ""]
    return [*head, f"![{image.heading or image.name}](figures/{image.name})", "", image.caption, ""]


def to_markdown(c: Content) -> str:
    """The report as Markdown; figures are referenced as ``figures/<name>.png``."""
    out = [f"# {c.title}", "", c.intro, "", *[f"> {n}" for n in c.notes]]
    out += ["", f"## {SECTIONS[0]}", "", markdown_table(c.table), ""]
    out += [f"- {n}" for n in c.table_notes]
    if c.agreement is not None and not c.agreement.empty:
        out += ["", f"### {AGREEMENT}", "", c.agreement_note, "", markdown_table(c.agreement)]
    out += ["", f"## {SECTIONS[1]}", ""]
    if not c.not_finished:
        out.append("Every cell finished.")
    for f in c.not_finished:
        out.append(f"- **{f['cell']}**: {f['status']}: {f['reason']}")
    out += ["", f"## {SECTIONS[2]}", ""]
    for image in c.curves:
        out += _md_image(image, "###")
    for task in dict.fromkeys(x["task"] for x in c.samples):
        out += [f"### {task}: generated text", "", SAMPLES_NOTE, ""]
        for x in (x for x in c.samples if x["task"] == task):
            out += [f"**{x['cell']}**, after the prompt `{x['prompt']}`:", "", "```text"]
            out += [x["text"], "```", ""]
    out += [f"## {SECTIONS[3]}", "", *_md_image(c.step_time, "")]
    out += [f"## {SECTIONS[4]}", "", *_md_image(c.first_step, "")]
    out += [f"## {SECTIONS[5]}", ""] + [f"- **{k}**: {v}" for k, v in c.environment]
    if not c.tasks.empty:
        out += ["", markdown_table(c.tasks)]
    out += ["", f"## {SECTIONS[6]}", "", "```bash", c.command, "```", "", c.command_note, ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------- HTML

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1200px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
td.status-ok { color: #1a7f37; font-weight: 600; }
td.status-failed, td.status-timeout, td.status-diverged { color: #fff; background: #b2182b !important; font-weight: 600; }
td.status-unavailable { color: #555; background: #e8e8e8 !important; font-weight: 600; }
img { max-width: 100%; height: auto; } figure { margin: 1em 0 2em; }
figcaption, .note { color: #555; font-size: 13px; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
blockquote { border-left: 4px solid #f0ad4e; margin: 1em 0; padding: .2em 1em; background: #fff8e6; }
details pre { font-size: 12px; }
"""


def _e(value) -> str:
    return html.escape("-" if value is None else str(value))


def html_table(df: pd.DataFrame) -> str:
    """A DataFrame as an HTML table; a ``status`` column's cells get a class per status."""
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        cells = [
            f'<td class="status-{_e(v)}">{_e(v)}</td>' if col == "status" else f"<td>{_e(v)}</td>"
            for col, v in zip(df.columns, row, strict=True)
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_image(image: Image, level: str) -> str:
    head = f"<{level}>{_e(image.heading)}</{level}>" if image.heading and level else ""
    if image.png is None:
        return f'{head}<p class="note">{_e(image.caption)}</p>'
    data = base64.b64encode(image.png).decode("ascii")
    return (
        f'{head}<figure><img alt="{_e(image.heading or image.name)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{_e(image.caption)}</figcaption></figure>'
    )


def _html_not_finished(items: list[dict[str, str]]) -> str:
    if not items:
        return "<p>Every cell finished.</p>"
    parts = [
        f'<li><b>{_e(f["cell"])}</b>: <span class="status">{_e(f["status"])}</span>: '
        f"{_e(f['reason'])}<details><summary>full reason</summary><pre>{_e(f['detail'])}</pre>"
        "</details></li>"
        for f in items
    ]
    return "<ul>" + "".join(parts) + "</ul>"


def _html_samples(samples: list[dict[str, str]], task: str) -> str:
    parts = [f"<h3>{_e(task)}: generated text</h3><p class='note'>{_e(SAMPLES_NOTE)}</p>"]
    for x in (x for x in samples if x["task"] == task):
        parts.append(
            f"<p><b>{_e(x['cell'])}</b>, after the prompt <code>{_e(x['prompt'])}</code>:</p>"
            f"<pre>{_e(x['text'])}</pre>"
        )
    return "".join(parts)


def _html_agreement(c: Content) -> str:
    if c.agreement is None or c.agreement.empty:
        return ""
    return (
        f'<h3 id="agreement">{AGREEMENT}</h3><p class="note">{_e(c.agreement_note)}</p>'
        + html_table(c.agreement)
    )


def to_html(c: Content) -> str:
    """The report as one HTML page with every figure inlined."""
    env = "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in c.environment)
    body = [
        f"<h1>{_e(c.title)}</h1><p>{_e(c.intro)}</p>",
        *[f"<blockquote>{_e(n)}</blockquote>" for n in c.notes],
        f'<h2 id="summary">{SECTIONS[0]}</h2>',
        html_table(c.table),
        '<ul class="note">' + "".join(f"<li>{_e(n)}</li>" for n in c.table_notes) + "</ul>",
        _html_agreement(c),
        f'<h2 id="not-finished">{SECTIONS[1]}</h2>',
        _html_not_finished(c.not_finished),
        f'<h2 id="learning-curves">{SECTIONS[2]}</h2>',
        *[_html_image(i, "h3") for i in c.curves],
        *[_html_samples(c.samples, task) for task in dict.fromkeys(x["task"] for x in c.samples)],
        f'<h2 id="step-time">{SECTIONS[3]}</h2>',
        _html_image(c.step_time, ""),
        f'<h2 id="first-step">{SECTIONS[4]}</h2>',
        _html_image(c.first_step, ""),
        f'<h2 id="environment">{SECTIONS[5]}</h2><ul>{env}</ul>',
        html_table(c.tasks) if not c.tasks.empty else "",
        f'<h2 id="reproduce">{SECTIONS[6]}</h2>',
        f'<pre><code>{_e(c.command)}</code></pre><p class="note">{_e(c.command_note)}</p>',
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(c.title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )

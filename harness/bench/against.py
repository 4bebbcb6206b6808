"""One bench against an earlier one: each measurement's figure then and now, and
whether it held."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.validate import UsageError

STABLE_WITHIN = 0.10  # two invocations' ratios may differ by this much, relative
RATIO_OF = {"overhead": "ratio", "roofline": "fraction", "scaling": "best_step_ms"}
KEY = ("benchmark", "task", "batch", "framework", "mode", "minimal_mode", "threads")


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """A bench folder's rows (``bench.jsonl``); the last of a measurement measured twice."""
    path = Path(folder) / "bench.jsonl"
    if not path.is_file():
        raise UsageError(
            f"{path} does not exist: --against takes a folder an earlier `rosetta bench "
            "--out DIR` wrote"
        )
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list({_key(r): r for r in rows}.values())


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in KEY)


# what a roofline or scaling figure is made of, each compared with its value before
# too: a fraction that moved with its step while the matmul held, and with the
# memory reading, moved with the host's memory speed
PARTS = {
    "step_change": "best_step_ms",
    "matmul_change": "best_matmul_gflops",
    "read_change": "read_gbps",
}


def _change(now: float | None, then: float | None) -> float | None:
    return now / then - 1 if now and then else None


def stability(rows: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> pd.DataFrame:
    """Each measurement's figure (the overhead ratio, the roofline fraction, the
    scaling step time at its fastest turn) in this invocation against an earlier
    one's: ``change`` is now / before - 1, and ``stable`` whether it is within
    ``STABLE_WITHIN``; for the roofline's and scaling's, the change of its best step,
    best matmul and memory reading (``PARTS``) as well."""

    before = {_key(r): r for r in earlier}
    out = []
    for r in rows:
        b = before.get(_key(r)) or {}
        field = RATIO_OF[r["benchmark"]]
        now, then = r.get(field), b.get(field)
        change = _change(now, then)
        # (a scaling figure is its best step: its step_change would repeat change)
        parts = (
            {}
            if r["benchmark"] == "overhead"
            else {
                name: None if key == field else _change(r.get(key), b.get(key))
                for name, key in PARTS.items()
            }
        )
        out.append(
            {
                "benchmark": r["benchmark"],
                "task": r["task"],
                "batch": r["batch"],
                "framework": r["framework"],
                "mode": r["mode"],
                "minimal_mode": r.get("minimal_mode") or "",
                "figure": field,
                "before": then,
                "now": now,
                "change": change,
                "stable": None if change is None else abs(change) <= STABLE_WITHIN,
                **parts,
            }
        )
    return pd.DataFrame(out)


def held(stable: pd.DataFrame) -> str:
    """How many of the figures compared held, in words."""
    compared = stable["stable"].notna()
    line = (
        f"{int(stable['stable'][compared].astype(bool).sum())} of {int(compared.sum())} "
        f"compared held within {STABLE_WITHIN:.0%}"
    )
    missing = len(stable) - int(compared.sum())
    return line + (f" ({missing} with no figure before or now)" if missing else "")

"""What a run shows while it runs: on a terminal, one line per running cell (its epoch,
loss and test metric) under a bar of the whole matrix; elsewhere (a log file, CI), one
line per finished cell and nothing redrawn."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, total: int, enabled: bool = True, tty: bool | None = None):
        self.total, self.done, self.enabled = total, 0, enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.lines: dict[int, Any] = {}  # cell index -> its tqdm line
        self.free: list[int] = []  # screen rows under the overall bar that are free
        self.rows = 0
        self.overall = None
        if enabled and self.tty:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.overall = tqdm(total=total, unit="cell", dynamic_ncols=True, position=0)

    def started(self, i: int, label: str) -> None:
        if self.overall is None:
            return
        if not self.free:
            self.rows += 1
            self.free.append(self.rows)
        row = self.free.pop(0)
        line = self._tqdm(
            total=None, bar_format="  {desc}", position=row, leave=False, dynamic_ncols=True
        )
        line.row, line.label = row, label
        line.set_description_str(label)
        self.lines[i] = line

    def event(self, i: int, event: dict[str, Any]) -> None:
        line = self.lines.get(i)
        if line is None or event.get("event") != "epoch":
            return
        shown = [f"epoch {event['epoch']}/{event['epochs']}", f"loss {event['train_loss']:.4g}"]
        shown += [f"{k[5:]} {event[k]:.4g}" for k in event if k.startswith("test_")][:2]
        line.set_description_str(f"{line.label}: {', '.join(shown)}")

    def finished(self, label: str, record: dict[str, Any], i: int | None = None) -> None:
        self.done += 1
        if not self.enabled:
            return
        text = f"[{self.done}/{self.total}] {label}: {record['status']}{brief(record)}"
        if self.overall is None:
            print(text, flush=True)
            return
        line = self.lines.pop(i, None) if i is not None else None
        if line is not None:
            self.free.append(line.row)
            self.free.sort()
            line.close()
        self.overall.write(text)
        self.overall.update(1)

    def close(self) -> None:
        for line in self.lines.values():
            line.close()
        if self.overall is not None:
            self.overall.close()


def brief(record: dict[str, Any]) -> str:
    """The metrics (or the reason) and the time of a finished cell, in parentheses."""
    m = record.get("metrics") or {}
    parts = [f"{k} {v:.4g}" for k, v in m.items()]
    if record.get("error") and record["status"] != "ok":
        parts.append(record["error"].splitlines()[0][:200])
    if record.get("total_s") is not None:
        parts.append(f"{record['total_s']:.1f} s")
    return (" (" + ", ".join(parts) + ")") if parts else ""

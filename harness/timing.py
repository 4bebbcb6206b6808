"""Clocks and summaries: phases kept apart, medians and IQRs of step times.

Every clock read that follows device work is preceded by a sync (the runner
reads each step's loss, a host read in every framework, and calls
``backend.sync`` before phase boundaries).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

WARMUP_STEPS = 5  # steps after the first that are neither compile nor steady state


@dataclass
class Phases:
    """Seconds per named phase, in the order they happened."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def step_summary(step_seconds: list[float]) -> dict[str, float | int | None]:
    """First step (trace + compile), warm-up, and the steady state's median and IQR."""
    if not step_seconds:
        return {"first_step_s": None, "step_median_s": None, "step_iqr_s": None, "steady_steps": 0}
    steady = step_seconds[1 + WARMUP_STEPS :] or step_seconds[1:] or step_seconds
    q1, med, q3 = np.percentile(steady, [25, 50, 75])
    return {
        "first_step_s": step_seconds[0],
        "warmup_s": float(sum(step_seconds[1 : 1 + WARMUP_STEPS])),
        "step_median_s": float(med),
        "step_iqr_s": float(q3 - q1),
        "step_q1_s": float(q1),
        "step_q3_s": float(q3),
        # what the first step took beyond a steady one: tracing and compiling (and,
        # in eager mode, first-call allocations and kernel selection)
        "first_step_excess_s": max(0.0, step_seconds[0] - float(med)),
        "steady_steps": len(steady),
    }

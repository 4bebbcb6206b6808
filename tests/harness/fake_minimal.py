"""A stand-in for ``impls/<fw>/minimal.py`` in the bench worker's tests: ``loop`` as
the real ones give it, each step a numpy matmul."""

from __future__ import annotations

import time

import numpy as np

CALLS: list[int] = []  # each steps() call's k, in order


def loop(cfg: dict):
    a = np.ones((cfg["batch"], cfg["batch"]), np.float32)

    def steps(k: int) -> tuple[list[float], float]:
        CALLS.append(k)
        times = []
        for _ in range(k):
            t0 = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t0)
        return times, 0.5

    return steps

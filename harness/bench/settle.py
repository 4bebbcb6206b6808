"""The bench's rounds: passes over every measurement, then over those whose median is
still unsettled, each row written once its measurement is done."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import validate
from harness.bench.plan import (
    BENCHMARKS,
    SETTLED_WITHIN,
    TASKS,
    THOROUGH_MAX_ROUNDS,
    Job,
    _label,
    planned,
    shared,
    take,
)
from harness.bench.stats import row
from harness.validate import UsageError


def validate_bench(benchmarks, frameworks, modes, rounds: int, tasks, jobs: int = 1) -> None:
    """A bench's options checked before anything runs (UsageError naming the bad one)."""
    validate.one_of("benchmark", benchmarks, BENCHMARKS)
    validate.frameworks(frameworks)
    validate.modes(modes)
    validate.at_least("--rounds", rounds)
    validate.one_of("bench task", tasks, TASKS)
    if jobs != 1:
        raise UsageError(
            f"--jobs {jobs}: the bench runs one process at a time (--jobs 1), since "
            "its ratios need the whole machine for each process"
        )


@dataclass
class _Settling:
    """One bench's rounds so far: each group's processes (a group: the jobs that time
    the same, ``shared``), and each job's row once its measurement is done."""

    jobs: list[Job]
    groups: list[list[int]]
    out: Path
    say: Callable[[dict], None]
    rounds: int
    max_rounds: int
    bar: Any  # the progress bar (tqdm)
    taken: list[list[dict[str, Any]]] = field(init=False)
    kept: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.taken = [[] for _ in self.groups]

    def keep(self, i: int, done: dict) -> None:
        """Job ``i``'s row, done: appended to bench.jsonl and given to ``say``."""
        self.kept[i] = done
        with (self.out / "bench.jsonl").open("a") as f:
            f.write(json.dumps(done) + "\n")
        with self.bar.external_write_mode():
            self.say(done)

    def settles(self, g: int) -> bool:
        """One more process for group ``g``; whether that settled it (its rows kept)."""
        members, results = [self.jobs[i] for i in self.groups[g]], self.taken[g]
        n = len(results)
        self.bar.set_description(
            f"round {n + 1}{'' if n < self.rounds else ' (settling)'}: {_label(members)}"
        )
        results.append(take(members, self.out, n))
        self.bar.update()
        if n + 1 < self.rounds:
            return False
        rows = {i: row(self.jobs[i], results) for i in self.groups[g]}
        if n + 1 < self.max_rounds and any(
            (r.get("uncertainty") or 0) > SETTLED_WITHIN for r in rows.values()
        ):
            return False
        for i, r in rows.items():
            self.keep(i, r)
        return True

    def one_pass(self, todo: list[int]) -> list[int]:
        """A process for each group in ``todo``; the groups still unsettled after it."""
        unsettled = [g for g in todo if not self.settles(g)]
        if len(self.taken[todo[0]]) >= self.rounds:  # the passes from here on: one each
            self.bar.total += len(unsettled)
            self.bar.refresh()
        return unsettled

    def keep_taken(self, todo: list[int]) -> None:
        """Interrupted: the rows of what the rounds of ``todo`` measured so far."""
        for g in todo:
            for i in self.groups[g]:
                if self.taken[g] and i not in self.kept:
                    self.keep(i, row(self.jobs[i], self.taken[g]))


def run_bench(
    benchmarks: Iterable[str],
    frameworks: Iterable[str],
    modes: Iterable[str],
    out: Path,
    threads: int = 0,
    say: Callable[[dict], None] = lambda row: None,
    rounds: int = 1,
    progress: bool = False,
    max_rounds: int = THOROUGH_MAX_ROUNDS,
    tasks: Iterable[str] = TASKS,
) -> list[dict[str, Any]]:
    """Run the named benchmarks of ``tasks``, each measurement in ``rounds`` processes,
    and in more, up to ``max_rounds``, while its median is unsettled. Rows that time
    the same (``shared``) take the same processes, and take more while any of them is
    unsettled.

    The rounds are passes over every measurement, one after the other, so that one
    measurement's processes lie a pass apart: a stretch of minutes in which the
    machine runs slower falls on one round of the measurements it meets, and their
    median leaves it out, where a measurement's rounds taken back to back would all
    fall in it. After ``rounds`` passes, further passes go over the measurements
    whose median is still uncertain by more than ``SETTLED_WITHIN``. Each row is
    appended to ``out/bench.jsonl`` (and given to ``say``) once its measurement is
    done; an interrupted bench keeps the rows of what its rounds measured so far."""
    from tqdm.auto import tqdm

    tasks = list(tasks)
    validate_bench(benchmarks, frameworks, modes, rounds, tasks)
    max_rounds = max(rounds, max_rounds)
    out.mkdir(parents=True, exist_ok=True)
    jobs = planned(benchmarks, frameworks, modes, threads, tasks)
    groups = shared(jobs)
    bar = tqdm(total=rounds * len(groups), disable=not progress, unit="process", dynamic_ncols=True)
    settling = _Settling(jobs, groups, out, say, rounds, max_rounds, bar)
    todo = list(range(len(groups)))
    try:
        while todo:
            todo = settling.one_pass(todo)
    except KeyboardInterrupt:
        settling.keep_taken(todo)
        raise
    finally:
        bar.close()
    kept = settling.kept
    return [kept[i] for i in sorted(kept)]  # in the order of the jobs, not of settling

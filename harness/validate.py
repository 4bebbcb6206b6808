"""The checks the commands' options share, each in one place: a value that cannot work
raises :class:`UsageError` naming the option, the value and what is allowed, before
anything runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.backend import BACKENDS, MODES, install_hint, missing_packages

DEVICES = ("cpu", "gpu", "auto")
DTYPES = ("float64", "float32")


class UsageError(ValueError):
    """A request that cannot work (unknown framework, mode, device, ...)."""


def one_of(what: str, values: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """``values`` when each is one of ``allowed``; ``what`` names them ("framework")."""
    values, allowed = list(values), list(allowed)
    for value in values:
        if value not in allowed:
            raise UsageError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return values


def frameworks(names: Iterable[str], installed: bool = False) -> list[str]:
    """Known framework names; with ``installed``, also installed ones."""
    names = one_of("framework", names, BACKENDS)
    if installed:
        for name in names:
            if missing_packages(BACKENDS[name]):
                raise UsageError(install_hint(BACKENDS[name]))
    return names


def modes(names: Iterable[str]) -> list[str]:
    return one_of("mode", names, MODES)


def at_least(option: str, value: Any, low: int = 1) -> int:
    """A whole number of ``low`` or more given to ``option`` ("--jobs")."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{option} must be {low} or more, not {value}")
    return value


def above_zero(option: str, value: Any, unit: str = "a number") -> float:
    """A number above 0 given to ``option`` ("--timeout", in ``unit`` "seconds")."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise UsageError(f"{option} takes {unit} above 0, not {value}")
    return float(value)


def run_folder(out: str | None, resume: str | None) -> str | None:
    """The folder a command writes: ``--resume``'s when given (then an ``--out`` must
    name the same one), else ``--out`` (None: a new one under results/)."""
    from pathlib import Path

    if resume is None:
        return out
    if out is not None and Path(out) != Path(resume):
        raise UsageError(
            f"--out {out!r} and --resume {resume!r} name two folders: a resumed "
            "run writes into the folder it resumes"
        )
    if not Path(resume).is_dir():
        raise UsageError(f"--resume {resume!r}: no such folder")
    return resume

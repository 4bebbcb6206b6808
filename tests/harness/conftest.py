"""Fixtures for the harness tests: a headless Chromium to look at report.html with.

``chromium`` is Debian's package. Where /usr/bin/chromium is missing the fixture
installs it with apt-get (CI runs as root on a fresh clone and may reach Debian's
mirrors); where that cannot work (not root, no apt-get, the install fails or
times out) the tests that need a browser skip, saying why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
APT_TIMEOUT_S = 300  # per apt-get command; the download is ~100 MB
INSTALL_HINT = "apt-get install --no-install-recommends chromium"


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _apt_get(*args: str) -> None:
    """One apt-get command, quiet and non-interactive; skips the test on failure."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=120", *args]
    try:
        out = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"chromium install failed: `{' '.join(cmd)}` ran past {APT_TIMEOUT_S} s")
    if out.returncode != 0:
        pytest.skip(
            f"chromium install failed: `{' '.join(cmd)}` exited {out.returncode}:\n"
            + _tail(out.stdout + out.stderr)
        )


def _install_chromium() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install it with")
    if getattr(os, "geteuid", lambda: -1)() != 0:
        pytest.skip(f"{CHROMIUM} is missing and only root can install it: sudo {INSTALL_HINT}")
    # one installer at a time (pytest-xdist workers each run session fixtures)
    lock_path = Path(tempfile.gettempdir()) / "rosetta-chromium-install.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not CHROMIUM.exists():
            _apt_get("update", "-qq")
            _apt_get("install", "-y", "-qq", "--no-install-recommends", "chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path to a headless-capable Chromium, installed with apt-get if need be."""
    if not CHROMIUM.exists():
        _install_chromium()
    if not CHROMIUM.exists():
        pytest.skip(f"apt-get installed chromium but {CHROMIUM} is still missing")
    try:
        out = subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{CHROMIUM} does not run: {exc}")
    if out.returncode != 0:
        pytest.skip(f"{CHROMIUM} --version exited {out.returncode}: {_tail(out.stderr)}")
    return str(CHROMIUM)

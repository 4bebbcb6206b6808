"""A real Ray cluster on this machine, for tests/harness/test_ray.py and
tests/ray_vs_local.py, inside a network namespace of its own.

Tests may reach loopback addresses only, and on Linux Ray binds the machine's interface
address even when told 127.0.0.1; in a namespace whose only interface is loopback,
every Ray process (and the driver, run there with ``nsenter``) uses 127.0.0.1. Needs
root (``unshare --net``).

Run as ``python -m tests.harness.raynet`` it is instead a worker (the protocol of
harness.worker) whose record is its own environment and where it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def why_not() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install -e '.[ray]')"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    try:
        done = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"unshare --net failed: {err}"
    if done.returncode != 0:
        return f"unshare --net is not permitted here: {done.stderr.decode().strip()}"
    return None


def _net_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


class Namespace:
    """A network namespace with loopback up, held by a sleeping process; ``close()``
    kills every process in it (a Ray cluster's daemons included)."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        ours = _net_ns("self")
        deadline = time.monotonic() + 30
        # unshare(2) happens in the child after Popen returns: wait until it has
        while _net_ns(self.holder.pid) in (ours, None):
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("unshare --net did not start")
            time.sleep(0.02)
        self.inode = _net_ns(self.holder.pid)
        self.run(["ip", "link", "set", "lo", "up"], check=True)

    def cmd(self, args: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", *args]

    def run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(args), **kw)

    def popen(self, args: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(args), **kw)

    def pids(self) -> list[int]:
        """Every process in the namespace but its holder."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.holder.pid and _net_ns(entry) == self.inode:
                found.append(int(entry))
        return found

    def close(self) -> None:
        # not `ray stop`: it kills every Ray process on the machine by name, ours or not
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.3)
        self.holder.kill()
        self.holder.wait()


class Cluster:
    """``ray start`` processes in ``ns``: a head at 127.0.0.1:``port``, then nodes.
    ``env`` goes into every node's environment (Ray's workers, and the cells they
    start, inherit it)."""

    def __init__(self, ns: Namespace, port: int = 6379, env: dict[str, str] | None = None) -> None:
        self.ns, self.port = ns, port
        self.address = f"127.0.0.1:{port}"
        self.temp_dir = tempfile.mkdtemp(prefix="rray-")  # short: Ray puts sockets in it
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.nodes = 0

    def _start(self, args: list[str]) -> None:
        common = ["--num-cpus=0", "--disable-usage-stats", f"--temp-dir={self.temp_dir}"]
        done = self.ns.run(
            [*RAY, "start", *args, *common],
            env=self.env,
            text=True,
            capture_output=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        self.nodes += 1

    def head(self, slots: int = 0) -> None:
        self._start(
            [
                "--head",
                f"--port={self.port}",
                f"--resources={json.dumps({'rosetta_slot': slots})}",
                "--include-dashboard=false",
            ]
        )

    def node(self, slots: int = 1) -> None:
        self._start(
            [f"--address={self.address}", f"--resources={json.dumps({'rosetta_slot': slots})}"]
        )

    def wait_for(self, nodes: int, timeout: float = 120) -> None:
        """Until ``nodes`` nodes are alive (a node's `ray start` returns before the GCS
        lists it)."""
        probe = (
            "import logging, sys, time, ray\n"
            f"ray.init(address={self.address!r}, logging_level=logging.ERROR)\n"
            f"deadline = time.monotonic() + {timeout}\n"
            f"while sum(n['Alive'] for n in ray.nodes()) != {nodes}:\n"
            "    if time.monotonic() > deadline: sys.exit(ray.nodes())\n"
            "    time.sleep(0.2)\n"
        )
        done = self.ns.run(
            [sys.executable, "-c", probe],
            env=self.env,
            text=True,
            capture_output=True,
            timeout=timeout + 60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{nodes} Ray nodes did not come up: {done.stderr[-3000:]}")

    def close(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[str, int] | None:
    """(name, parent pid) of a process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    return name, int(text[text.rindex(")") + 2 :].split()[1])


def find_cell(label: str, ns: Namespace) -> int | None:
    """The worker process of the cell ``label`` (its ROSETTA_CELL), in ``ns``."""
    want = f"ROSETTA_CELL={label}".encode()
    for pid in ns.pids():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in env:
            return pid
    return None


def raylet_of(pid: int) -> int:
    """The raylet above a process (the node it runs on)."""
    at: int | None = pid
    while at and at > 1:
        stat = _stat(at)
        if stat is None:
            break
        if stat[0] == "raylet":
            return at
        at = stat[1]
    raise LookupError(f"process {pid} runs under no raylet")


def kill_tree(root: int) -> list[int]:
    """SIGKILL a process and every process below it; returns their pids."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[1], []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


# --------------------------------------------------------------------------- worker


def worker() -> None:
    """A worker whose record is what a cell would see: its environment. With
    RAYNET_SLEEP=S in its job's environment it first sleeps S seconds."""
    from harness.worker import emit

    sys.stdin.read()
    print("a line of the worker's own output", flush=True)
    emit("epoch", epoch=1, epochs=1)
    time.sleep(float(os.environ.get("RAYNET_SLEEP", "0")))
    emit("record", record={"env": dict(os.environ), "pid": os.getpid()})


def drive(address: str) -> None:
    """Run from inside the namespace: RayExecutor at ``address`` with this module's
    worker; prints what happened as JSON (the test checks it)."""
    from harness.executors import Job
    from harness.executors.ray_cluster import RayExecutor
    from harness.validate import UsageError

    out: dict = {}
    t0 = time.monotonic()
    try:
        RayExecutor("127.0.0.1:1")
    except UsageError as err:
        out["unreachable"] = [str(err), time.monotonic() - t0]
    ex = RayExecutor(address)
    out["slots"] = ex.slots
    # one job leaves OMP_NUM_THREADS to the node (Ray sets it to 1 in its workers), one
    # sets it: neither may see Ray's value
    events: list[dict] = []
    own = Job("echo", "tests.harness.raynet", "{}", {"MKL_NUM_THREADS": "3"}, 60.0)
    set2 = Job("echo2", "tests.harness.raynet", "{}", {"OMP_NUM_THREADS": "2"}, 60.0)
    futures = [ex.submit(own, events.append), ex.submit(set2)]
    out["echo"], out["echo2"] = (vars(f.result(timeout=120)) for f in futures)
    out["echo"]["events"] = events
    # a job still running when the executor closes: cancelled, and its worker gone
    started: list[dict] = []
    sleeper = Job(
        "sleeper",
        "tests.harness.raynet",
        "{}",
        {"RAYNET_SLEEP": "600", "ROSETTA_CELL": "sleeper"},
        900.0,
    )
    future = ex.submit(sleeper, lambda e: e["event"] == "epoch" and started.append(e))
    deadline = time.monotonic() + 60
    while not started and time.monotonic() < deadline:
        time.sleep(0.1)
    ex.close()
    out["sleeper"] = vars(future.result(timeout=30))
    # the kernel kills the worker once its Ray worker is gone (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 10
    while (alive := _alive("sleeper")) and time.monotonic() < deadline:
        time.sleep(0.2)
    out["sleeper_alive"] = alive
    print("RESULT " + json.dumps(out, default=str))


def _alive(label: str) -> bool:
    """Whether a process with ROSETTA_CELL=label runs (on this machine)."""
    want = f"ROSETTA_CELL={label}".encode()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if want in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                return True
        except OSError:
            continue
    return False


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "drive":
        drive(sys.argv[2])
    else:
        worker()

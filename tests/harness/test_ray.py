"""``--executor ray`` on a real Ray cluster on this machine: a head with no
rosetta_slot and two nodes with one each, started with ``ray start`` in a network
namespace of their own (tests/harness/raynet.py says why), the driver run there too.

One test starts one cluster and tells the whole story in order (each cluster start
costs seconds on two cores, and xdist would start one per test worker): a cluster
with no slot is refused; the executor's own contract (environment, events, log,
cancel); a matrix whose every record comes back (ok, crash -> failed, hang ->
timeout); then a node killed under its cell: that cell failed with the reason, the
others finish.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import raynet

WHY_NOT = raynet.why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

FAKE = "fake=tests.harness.fake_backend:NumpyBackend@eager^numpy"
# the nodes' environment (their workers, and the cells these start, inherit it)
FAULTS = "crash@xor_single_layer,hang@linear_regression,slow@logistic_regression"
HUNG = "linear_regression/fake/eager/cpu"


def rosetta(ns, cluster, out: Path, tasks: str, timeout: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "--executor",
        "ray",
        "--address",
        cluster.address,
        "--frameworks",
        "fake",
        "--modes",
        "eager",
        "--tasks",
        tasks,
        "--timeout",
        str(timeout),
        "--out",
        str(out),
        "--quiet",
    ]


def records(out: Path) -> dict[str, dict]:
    lines = (out / "records.jsonl").read_text().splitlines()
    found = [json.loads(line) for line in lines if line.strip()]
    by_task = {r["task"]: r for r in found}
    assert len(by_task) == len(found), [r["task"] for r in found]  # one record per cell
    return by_task


@pytest.mark.slow
def test_a_ray_cluster_runs_the_matrix_and_survives_a_dead_node(tmp_path):
    ns = raynet.Namespace()
    cluster = raynet.Cluster(ns, env={"ROSETTA_FAKE_FAULT": FAULTS, "ROSETTA_BACKENDS": FAKE})
    driver = {**cluster.env, "ROSETTA_FAKE_FAULT": ""}  # faults are the nodes' business
    t0 = time.monotonic()
    try:
        cluster.head(slots=0)
        # a head alone runs no cell: refused before anything is planned
        done = ns.run(
            rosetta(ns, cluster, tmp_path / "none", "xor", 60),
            env=driver,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "--resources='{\"rosetta_slot\": 1}'" in done.stderr

        cluster.node()
        cluster.node()
        cluster.wait_for(3)
        print(f"cluster up after {time.monotonic() - t0:.1f} s")
        check_the_executor(ns, cluster)
        check_a_matrix(ns, cluster, driver, tmp_path / "a")
        check_a_dead_node(ns, cluster, driver, tmp_path / "b")
        print(f"all done after {time.monotonic() - t0:.1f} s")
    finally:
        ns.close()
        cluster.close()


def check_the_executor(ns, cluster) -> None:
    done = ns.run(
        [sys.executable, "-m", "tests.harness.raynet", "drive", cluster.address],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    why, seconds = out["unreachable"]
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in why and "ray start --head" in why
    assert seconds < 10  # not ray.init's minutes of retries
    assert out["slots"] == 2  # the head's 0 and the nodes' 1 each

    echo = out["echo"]
    assert echo["status"] == "done", echo
    env = echo["record"]["env"]
    # Ray set OMP_NUM_THREADS=1 (and a PYTHONBREAKPOINT) in the worker that ran the
    # task; the cell sees the node's environment and its job's, not those
    assert "OMP_NUM_THREADS" not in env and "PYTHONBREAKPOINT" not in env, env
    assert env["MKL_NUM_THREADS"] == "3" and env["ROSETTA_FAKE_FAULT"] == FAULTS
    assert out["echo2"]["record"]["env"]["OMP_NUM_THREADS"] == "2"
    assert echo["log"] == "a line of the worker's own output\n"  # came back, no shared disk
    extra = echo["extra"]
    assert extra["node_ip"] == "127.0.0.1" and len(extra["node_id"]) == 56
    assert extra["started"] <= extra["ended"] and extra["gpu"] is None
    kinds = [e["event"] for e in echo["events"]]
    assert kinds == ["started", "epoch"], kinds
    assert echo["events"][0]["node_id"] == extra["node_id"]

    # close() with a job running: its future says cancelled, its worker is gone
    assert out["sleeper"]["status"] == "cancelled", out["sleeper"]
    assert out["sleeper_alive"] is False


def check_a_matrix(ns, cluster, driver, out: Path) -> None:
    tasks = "xor,xor_single_layer,linear_regression,multi_feature_mlp"
    done = ns.run(
        rosetta(ns, cluster, out, tasks, 8), env=driver, capture_output=True, text=True, timeout=240
    )
    got = records(out)
    assert sorted(got) == sorted(tasks.split(",")), done.stdout + done.stderr
    status = {task: r["status"] for task, r in got.items()}
    assert status == {
        "xor": "ok",
        "multi_feature_mlp": "ok",
        "xor_single_layer": "failed",
        "linear_regression": "timeout",
    }, status
    assert got["xor"]["metrics"]["accuracy"] == 1.0
    assert "killed by signal 6" in got["xor_single_layer"]["error"]
    assert "no result within 8 s" in got["linear_regression"]["error"]
    # the driver wrote every cell's log, from what came back over Ray
    assert len(list((out / "logs").iterdir())) == len(got)


def check_a_dead_node(ns, cluster, driver, out: Path) -> None:
    # the hung cell holds one node's slot, the slow one the other's: kill the hung one's
    # node while both run; the slow one and the cells still waiting finish on the other
    tasks = "linear_regression,logistic_regression,xor,multi_feature_mlp"
    run = ns.popen(
        rosetta(ns, cluster, out, tasks, 300),
        env=driver,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while None in (
            hung := raynet.find_cell(HUNG, ns),
            raynet.find_cell("logistic_regression/fake/eager/cpu", ns),
        ):
            assert run.poll() is None and time.monotonic() < deadline, "the cells never ran"
            time.sleep(0.1)
        raylet = raynet.raylet_of(hung)
        assert hung in raynet.kill_tree(raylet)
        killed_at = time.monotonic()
        output, _ = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    print(f"the run ended {time.monotonic() - killed_at:.1f} s after the kill")
    got = records(out)
    assert sorted(got) == sorted(tasks.split(",")), output
    lost = got["linear_regression"]
    assert lost["status"] == "failed", lost
    assert "the Ray node running it died" in lost["error"], lost["error"]
    for task in ("logistic_regression", "xor", "multi_feature_mlp"):
        assert got[task]["status"] == "ok", got[task]

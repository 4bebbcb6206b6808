"""Opt-in benchmark (not a test): one matrix through ``rosetta run --executor ray`` on a
one-node Ray cluster with one rosetta_slot, then through the local executor, back to
back on this machine; prints both wall times and their ratio.

    .venv/bin/python tests/ray_vs_local.py [rosetta run options]   # e.g. --tasks xor

With no options it is the default matrix (about 20 minutes a run on two cores). Both
runs happen in a network namespace of their own (see tests/harness/raynet.py; needs
root), and the cluster is stopped before the local run, so that its idle daemons do
not slow that one. Only ``rosetta run`` is timed, not the cluster's start.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import raynet  # noqa: E402


def timed_run(ns: raynet.Namespace, env: dict, args: list[str], out: Path) -> float:
    cmd = [sys.executable, "-m", "harness.cli", "run", *args, "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    done = ns.run(cmd, env=env, text=True, capture_output=True)
    seconds = time.perf_counter() - t0
    if not (out / "records.jsonl").exists():
        sys.exit(f"`rosetta run {' '.join(args)}` wrote no records:\n{done.stdout}{done.stderr}")
    lines = (out / "records.jsonl").read_text().splitlines()
    statuses = [json.loads(line)["status"] for line in lines if line.strip()]
    ok = statuses.count("ok")
    print(f"  {len(statuses)} cells, {ok} ok, {seconds:.1f} s  ({out})", flush=True)
    return seconds


def main(argv: list[str]) -> None:
    why = raynet.why_not()
    if why:
        sys.exit(f"ray_vs_local: cannot start a Ray cluster here: {why}")
    out = Path(tempfile.mkdtemp(prefix="ray-vs-local-"))
    ns = raynet.Namespace()
    cluster = raynet.Cluster(ns)
    try:
        cluster.head(slots=1)  # one node that coordinates and runs the cells
        cluster.wait_for(1)
        print("ray:", flush=True)
        ray_s = timed_run(
            ns, cluster.env, ["--executor", "ray", "--address", cluster.address, *argv], out / "ray"
        )
    finally:
        ns.close()
        cluster.close()
    ns = raynet.Namespace()
    try:
        print("local:", flush=True)
        local_s = timed_run(ns, cluster.env, argv, out / "local")
    finally:
        ns.close()
    print(f"ray {ray_s:.1f} s, local {local_s:.1f} s, ray/local {ray_s / local_s:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])

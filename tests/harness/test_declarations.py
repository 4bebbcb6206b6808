"""Each backend declares what the harness knows of it (impls/<fw>/declare.py), and
harness/ names no framework's environment variables or packages itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from harness.backend import BACKENDS, BUILTIN
from harness.runner import thread_env

HARNESS = Path(__file__).resolve().parents[2] / "harness"
# frameworks' own variables (OpenMP's and MKL's pools are no framework's)
FRAMEWORK_VAR = re.compile(r"\b(?:TF|XLA|KERAS|PJRT|JAX|TORCH|TORCHINDUCTOR|FLAX)_[A-Z0-9_]+")


def literals() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(HARNESS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((str(path.relative_to(HARNESS)), node.lineno, node.value))
    return found


def test_harness_names_no_framework_variable_or_package():
    builtin = [BACKENDS[name] for name in ("torch", "tf", "jax")]
    packages = {p for info in builtin for p in info.packages}
    packages |= {d for info in builtin for _, d in info.distributions}
    packages -= set(BACKENDS)  # "torch" and "jax" are also the backends' own names
    bad = [
        f"{path}:{line}: {text[:60]!r}"
        for path, line, text in literals()
        if text in packages or FRAMEWORK_VAR.search(text)
    ]
    assert not bad, "declare these in impls/<fw>/declare.py instead:\n" + "\n".join(bad)


def test_the_check_would_see_a_framework_variable():
    assert FRAMEWORK_VAR.search("TF_NUM_INTRAOP_THREADS") and FRAMEWORK_VAR.search("XLA_FLAGS")
    assert not FRAMEWORK_VAR.search("OMP_NUM_THREADS") and not FRAMEWORK_VAR.search("ROSETTA_CELL")


def test_every_builtin_backend_is_declared_once_with_its_own_modes():
    assert [info.target.split(":")[0].rsplit(".", 1)[0] for info in BACKENDS.values()][:3] == list(
        BUILTIN
    )
    for info in (BACKENDS["torch"], BACKENDS["tf"], BACKENDS["jax"]):
        assert info.modes and set(info.modes) <= {"eager", "graph", "xla"}
        assert info.minimal == f"{info.target.split(':')[0].rsplit('.', 1)[0]}.minimal"
        assert all(ours in info.modes for _, ours in info.minimal_only)


def test_thread_settings_come_from_the_backend_that_loads():
    tf = thread_env(BACKENDS["tf"], 2)
    assert tf["TF_NUM_INTRAOP_THREADS"] == "2" and tf["OMP_NUM_THREADS"] == "2"
    assert tf["KERAS_BACKEND"] == "tensorflow"
    jax = thread_env(BACKENDS["jax"], 1)
    assert jax["PJRT_NPROC"] == "1" and "--xla_cpu_multi_thread_eigen=false" in jax["XLA_FLAGS"]
    assert "TF_NUM_INTRAOP_THREADS" not in jax  # a worker sets only its own framework's
    # 0: the framework's defaults, and whatever a parent set is removed
    for name in ("torch", "tf", "jax"):
        env = thread_env(BACKENDS[name], 0)
        assert env["OMP_NUM_THREADS"] is None
        assert all(v is None for k, v in env.items() if "THREADS" in k or k == "PJRT_NPROC")
    assert thread_env(None, 3) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}

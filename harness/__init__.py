"""Rosetta's harness: framework-free task specs, data, runner, results.

Only ``impls/<framework>/`` imports a framework; this package never does.
"""


def run(**kwargs):
    """Run a matrix of cells; see :func:`harness.api.run`."""
    from harness.api import run as _run

    return _run(**kwargs)

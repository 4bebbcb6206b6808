"""``rosetta bench``: the harness measured against the limits, as ratios taken in one run.

Three benchmarks, each measurement in its own process (``harness.paired``), one
process at a time:

* **overhead**: the harness's steady-state step time divided by the step time of a
  minimal hand-written loop (``impls/<fw>/minimal.py``: the same model, batch size
  and optimizer, the loop a user would write). Near 1 means the harness's
  framework-neutral loop costs nothing the framework would not cost anyway.
* **roofline**: the training step's FLOP/s (counted from the spec, see
  harness/flops.py) divided by the FLOP/s of a large float32 matmul timed in the
  same process with the same threads: how close a step gets to the machine's
  usable peak, the best step against the best matmul (``stats._best_fraction``).
* **scaling**: step time, FLOP/s and the roofline's fraction against the batch
  size, to show where each framework and mode stops being bound by per-step
  overhead: ``half_ceiling`` names the batch from which its step reaches half of
  its matmul's FLOP/s.

The roofline's and the scaling's rows of one measurement (the MLP at 256 to 1024)
come from the same processes (``plan.shared``).

What is compared runs in turns in one process, blocks of steps alternating with
each other (and with the matmul), and each overhead ratio is a median over block
pairs: the machine's speed drifts over seconds and minutes, and two processes timed
one after the other measure that drift as much as the loops. A bare bench takes
one process per measurement and states the spread over its turns
(``turn_spread``); with ``rounds`` above one (``--thorough``: five) every measurement is taken in that many processes, a pass over all the
measurements per round (so that a slow stretch of minutes meets one round of each,
not all of one's), and its figure is the median over them, with their spread (the
roofline's and scaling's: the fastest turn over them all). A measurement whose
rounds leave that median uncertain (``SETTLED_WITHIN``) takes further rounds, in
passes over the unsettled ones, up to ``max_rounds``: the processes of one
measurement can fall into two speeds, each for a whole process, and the median of a
few such processes lands on either.

Results go to ``bench.jsonl`` and ``bench.md`` (tables and a figure) in the run folder.

One job a module, each importing only those above it: ``plan`` (what is measured,
and the process that measures it), ``stats`` (a row's figures from its processes),
``settle`` (the rounds, until each median settles), ``against`` (a bench against
an earlier one) and ``render`` (the tables and bench.md).
"""

from __future__ import annotations

from harness.bench.against import STABLE_WITHIN, held, read_rows, stability
from harness.bench.plan import (
    BENCHMARKS,
    BLOCK_STEPS,
    BLOCKS,
    JOBS,
    MATMUL_SIZES,
    MAX_ROUNDS,
    OVERHEAD_CASES,
    ROOFLINE_CASES,
    ROUNDS,
    SCALING_BATCHES,
    SETTLED_WITHIN,
    TASKS,
    THOROUGH_MAX_ROUNDS,
    THOROUGH_ROUNDS,
    Job,
    Measure,
    bench_spec,
    paired,
    rounds_for,
    shared,
)
from harness.bench.render import HALF, half_ceiling, tables, write_markdown
from harness.bench.settle import run_bench, validate_bench
from harness.bench.stats import ROWS

__all__ = [
    "BENCHMARKS",
    "BLOCKS",
    "BLOCK_STEPS",
    "HALF",
    "JOBS",
    "MATMUL_SIZES",
    "MAX_ROUNDS",
    "OVERHEAD_CASES",
    "ROOFLINE_CASES",
    "ROUNDS",
    "ROWS",
    "SCALING_BATCHES",
    "SETTLED_WITHIN",
    "STABLE_WITHIN",
    "TASKS",
    "THOROUGH_MAX_ROUNDS",
    "THOROUGH_ROUNDS",
    "Job",
    "Measure",
    "bench_spec",
    "half_ceiling",
    "held",
    "paired",
    "read_rows",
    "rounds_for",
    "run_bench",
    "shared",
    "stability",
    "tables",
    "validate_bench",
    "write_markdown",
]

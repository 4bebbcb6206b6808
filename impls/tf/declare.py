"""What the harness knows of the TensorFlow/Keras backend without importing either."""

from __future__ import annotations

NAME = "tf"
TARGET = "impls.tf.backend:TFBackend"
PACKAGES = ("tensorflow", "keras")
DISTRIBUTIONS = {"tensorflow": "tensorflow-cpu"}  # the CPU wheel's name
EXTRA = "tf"
MODES = ("eager", "graph", "xla")
MINIMAL = "impls.tf.minimal"
MINIMAL_ONLY = {"fit": "graph"}  # Keras's own model.fit, paired with the graph mode

# read when tensorflow is imported: Keras on TF, and TF's C++ info lines off
ENV = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}


def thread_env(threads: int) -> dict[str, str | None]:
    """TF sizes its pools from these at import; one inter-op thread keeps a step's ops
    in order, so that only intra-op threads scale (0: TF's defaults)."""
    env: dict[str, str | None] = {
        **ENV,
        "TF_NUM_INTRAOP_THREADS": None,
        "TF_NUM_INTEROP_THREADS": None,
    }
    if threads > 0:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
    return env

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
COLOR = "#ff7f0e"  # its colour in every figure of a report

# read when tensorflow is imported: Keras on TF, and TF's C++ info lines off
ENV = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}

# what this framework does in each lesson (harness.lessons), after the common part
LESSONS = {
    "autograd": (
        "tape.gradient returns a new gradient on every call and keeps nothing between "
        "calls: two calls give 1.5 twice (a tape must be persistent to be asked twice)."
    ),
    "shapes": (
        "tf.function traces a new concrete function for every new input shape unless "
        "told otherwise: an input_signature with a None batch axis gives one generic "
        "trace, and reduce_retracing=True two (the first shape, then a generic one)."
    ),
    "control_flow": (
        "tf.function's AutoGraph rewrites an if on a tensor into tf.cond inside the graph."
    ),
}


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

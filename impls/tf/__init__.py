"""The TensorFlow/Keras 3 backend: Keras layers, a GradientTape step, eager / tf.function / XLA."""

import os

from impls.tf.declare import ENV

# before any module of this package imports keras: Keras on TF, TF's info lines off
for _key, _value in ENV.items():
    os.environ.setdefault(_key, _value)

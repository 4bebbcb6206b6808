"""The TensorFlow/Keras 3 backend: Keras layers, a GradientTape step, eager / tf.function / XLA."""

"""Import TensorFlow and Keras quietly; every module that needs them goes through here."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _import_quietly():
    """Import TensorFlow with the C++ start-up notices (oneDNN, CUDA probing) hidden.

    Those lines are written to file descriptor 2 before TensorFlow reads
    TF_CPP_MIN_LOG_LEVEL, so they are silenced at the descriptor.
    TF_CPP_MIN_LOG_LEVEL=0 shows them.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
        import keras  # noqa: F401
        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]

"""Import TensorFlow and Keras quietly; every module that needs them goes through here."""

import contextlib
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def native_output_silenced(fds=(2,)):
    """Silence what native code (TensorFlow's C++, the TFLite converter) writes to
    these file descriptors, which Python's own redirections cannot catch.

    TF_CPP_MIN_LOG_LEVEL=0 leaves everything visible, for debugging.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _import_quietly():
    """Import TensorFlow with the C++ start-up notices (oneDNN, CUDA probing) hidden.

    Those lines are written to file descriptor 2 before TensorFlow reads
    TF_CPP_MIN_LOG_LEVEL, so they are silenced at the descriptor.
    TF_CPP_MIN_LOG_LEVEL=0 shows them.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_output_silenced():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        tensorflow.config.list_physical_devices()
        _split_cpu(tensorflow)


def _split_cpu(tensorflow):
    """KDCLI_CPU_DEVICES=N: N logical CPU devices, so MirroredStrategy can run on a CPU (tests, trials)."""
    count = int(os.environ.get("KDCLI_CPU_DEVICES", "1") or 1)
    if count > 1:
        cpu = tensorflow.config.list_physical_devices("CPU")[0]
        tensorflow.config.set_logical_device_configuration(
            cpu, [tensorflow.config.LogicalDeviceConfiguration() for _ in range(count)]
        )


_import_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]

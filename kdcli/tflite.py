"""Running a `.tflite` file: the LiteRT (or TensorFlow Lite) interpreter, fed and read in float32.

`kdcli.evaluation` measures exports with it, and `kdcli.export` checks an
int8 export against its model with it before writing the file.
"""

import os
import warnings
from pathlib import Path

import numpy as np

from kdcli._tf import native_output_silenced, tf
from kdcli.artifacts import read_provenance
from kdcli.errors import KdcliError
from kdcli.models import check_shapes


def class_columns(y):
    """A classifier's outputs, one column per class: a sigmoid head's one probability `p` becomes
    `[1 - p, p]` (see `kdcli.models.head_kind`)."""
    return np.concatenate([1 - y, y], axis=-1) if y.shape[-1] == 1 else y


class TFLiteRunner:
    """A `.tflite` model, run through the LiteRT (or TensorFlow Lite) interpreter.

    Quantized inputs and outputs (full-integer models) are converted with the
    model's own scale and zero point, so it takes the same raw inputs.
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._single = self._interpreter(1)
        except (ValueError, RuntimeError) as e:
            raise KdcliError(f"{path}: cannot load TFLite model ({str(e).splitlines()[0]})") from e
        self._batched, self._batched_size = None, None
        details = self._single.get_output_details()[0]
        # One output column is a binary classifier's sigmoid probability (see `kdcli.models.head_kind`).
        width = int(details["shape"][-1])
        self.num_outputs = 2 if width == 1 else width
        self.input_shape = tuple(int(d) for d in self._single.get_input_details()[0]["shape"][1:])
        # (scale, zero point) of a quantized input and output; a scale of 0 where one is not quantized
        self.input_quantization = tuple(self._single.get_input_details()[0]["quantization"])
        self.output_quantization = tuple(details["quantization"])
        # A model exported for one sample per call (kdcli's recurrent exports) cannot be resized:
        # its batches go a sample at a time.
        self._one_per_call = int(self._single.get_input_details()[0]["shape_signature"][0]) == 1
        record = read_provenance(path) or {}
        self.params = record.get("params")
        self.trainable_params = record.get("trainable_params")

    def _interpreter(self, batch):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:  # LiteRT not installed: TensorFlow's own (deprecated) interpreter
            Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
        try:
            return self._allocated(Interpreter, batch)
        except RuntimeError as e:
            if "XNNPACK" not in str(e):
                raise
            # XNNPACK fails to prepare some small int8 graphs: the built-in kernels run them
            return self._allocated(Interpreter, batch, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    def _allocated(self, Interpreter, batch, resolver=None):
        """An interpreter of the file for `batch` samples a call, its tensors allocated."""
        with warnings.catch_warnings(), native_output_silenced():  # "INFO: Created XNNPACK delegate"
            warnings.simplefilter("ignore")
            interpreter = Interpreter(model_path=str(self.path), num_threads=os.cpu_count(),
                                      **({"experimental_op_resolver_type": resolver} if resolver else {}))
            index = interpreter.get_input_details()[0]["index"]
            shape = interpreter.get_input_details()[0]["shape"].copy()
            if shape[0] != batch:
                shape[0] = batch
                interpreter.resize_tensor_input(index, shape)
            interpreter.allocate_tensors()
        return interpreter

    def check(self, data, name):
        check_shapes(self.input_shape, self.num_outputs, data, name)

    def _run(self, interpreter, x):
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        x = np.asarray(x, np.float32)
        scale, zero = inp["quantization"]
        if inp["dtype"] in (np.int8, np.uint8) and scale:
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        elif np.issubdtype(inp["dtype"], np.integer):  # token ids (int32), which batches carry as float32
            x = np.rint(x)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return class_columns(y.astype(np.float32))

    def predict(self, split, batch_size):
        from kdcli.data import iterate

        return np.concatenate([self.call(x.numpy()) for x, _ in iterate(split.batches(batch_size))])

    def call(self, x):
        if len(x) == 1:
            return self._run(self._single, x)
        if self._one_per_call:
            return np.concatenate([self._run(self._single, x[i:i + 1]) for i in range(len(x))])
        if self._batched_size != len(x):
            self._batched, self._batched_size = self._interpreter(len(x)), len(x)
        return self._run(self._batched, x)

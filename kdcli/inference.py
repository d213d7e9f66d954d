"""Compiled calls of several steps, and batched inference built on them.

A small model's batch costs less than the call that runs it: the dispatch of
a `tf.function`, the hand-over of its results. Training (`kdcli.training`)
and inference (here: the validation pass, `evaluate`'s accuracy, soft
labels) therefore run several batches in one compiled call, a `tf.while_loop`
over an iterator, as Keras' `steps_per_execution` does. `StepsPerCall`
chooses how many from the calls' own times. The batches, and the ops run on
each, are the same whatever the count: so are the results.
"""

import contextlib
import time

import numpy as np

from kdcli._tf import tf
from kdcli.data import ArrayColumn, Split, data_errors

# Samples per inference batch, unless told otherwise.
INFERENCE_BATCH = 256
# The most bytes of outputs one inference call returns (it holds them twice: its batches, then joined).
CALL_OUTPUT_BYTES = 64 << 20


class StepsPerCall:
    """How many steps (batches) one compiled call runs (`--steps-per-call`): `fixed`, or chosen from the
    calls' times: as many as take about `TARGET` seconds (at most `MOST`), so that the cost of a call
    is spread over many steps of a small model, while a checkpoint, Ctrl-C or SIGTERM, which wait for
    the call to end, still land within a fraction of a second. The steps and their results are the
    same whatever the count: only where the loop may stop changes."""

    TARGET, MOST = 0.2, 128
    # Workers of a multi-worker run must run the same steps per call: a count fixed in advance.
    MULTI_WORKER = 16

    def __init__(self, fixed=None, clock=time.perf_counter):
        self.fixed, self.count, self.per_step, self.calls, self.clock = fixed, fixed or 1, None, 0, clock

    @classmethod
    def of(cls, given, multi_worker=False):
        """The count for `--steps-per-call given` (None: chosen), of a multi-worker run or not."""
        return cls(given or (cls.MULTI_WORKER if multi_worker else None))

    def size(self, left):
        """The next call's steps, with `left` steps left in the epoch."""
        return min(self.count, left)

    @contextlib.contextmanager
    def timed(self, count):
        """Time a call of `count` steps, and choose the next count from it (the first call traces)."""
        started = self.clock()
        yield
        self.calls += 1
        if self.fixed or self.calls == 1:
            return
        seconds = (self.clock() - started) / count
        self.per_step = seconds if self.per_step is None else 0.7 * self.per_step + 0.3 * seconds
        self.count = int(max(1, min(self.MOST, self.TARGET // max(self.per_step, 1e-6))))


class Inference:
    """A model's outputs (float32) over a split, batch by batch, several batches in each compiled call.

    Keep one for a model that is run again and again (the validation pass after each epoch): it is
    traced once, and its count of batches per call carries over.
    """

    def __init__(self, model, steps_per_call=None):
        if steps_per_call is not None and not (isinstance(steps_per_call, int) and steps_per_call >= 1):
            raise ValueError(f"steps_per_call must be 1 or more, or None, got {steps_per_call!r}")
        self.model, self.calls, self.most = model, StepsPerCall(steps_per_call), None
        self._compiled = tf.function(self._run, reduce_retracing=True)

    def _run(self, iterator, count):
        outputs = tf.TensorArray(tf.float32, size=count, infer_shape=False)  # the last batch may be smaller
        for i in tf.range(count):
            x = next(iterator)[0]
            outputs = outputs.write(i, tf.cast(self.model(x, training=False), tf.float32))
        return outputs.concat()

    def batches(self, split, batch_size=INFERENCE_BATCH, progress=None):
        """Yield the outputs for `split`, one batch (`batch_size` rows) at a time; `progress` is told
        `start(batches)`, `advance({})` once per batch and `stop()`."""
        total = -(-len(split) // batch_size)
        if progress is not None:
            progress.start(total)
        try:
            with data_errors():
                iterator = iter(split.batches(batch_size))
            done = 0
            while done < total:
                # the first call runs one batch: it traces, and shows how wide the outputs are
                count = min(self.calls.size(total - done), self.most or 1)
                with self.calls.timed(count), data_errors():
                    outputs = self._compiled(iterator, tf.constant(count, tf.int32)).numpy()
                done += count
                # a call's outputs stay within CALL_OUTPUT_BYTES, whatever the batch and the outputs' width
                self.most = max(1, CALL_OUTPUT_BYTES // max(outputs[:batch_size].nbytes, 1))
                for start in range(0, len(outputs), batch_size):
                    yield outputs[start:start + batch_size]
                    if progress is not None:
                        progress.advance({})
        finally:
            if progress is not None:
                progress.stop()

    def __call__(self, split, batch_size=INFERENCE_BATCH, progress=None):
        """The outputs for all of `split`, as one array."""
        return np.concatenate(list(self.batches(split, batch_size, progress)), axis=0)


def as_split(x):
    """`x` as a `Split`: a `Split` as it is, an array as a split of unlabelled inputs."""
    if isinstance(x, Split):
        return x
    x = np.asarray(x)
    return Split(ArrayColumn(x, "inputs"), None, np.zeros(len(x), np.int64))


def iter_logits(model, x, batch_size=INFERENCE_BATCH, progress=None, steps_per_call=None):
    """Yield the model's outputs for `x` (an array or a `Split`), one batch at a time, as float32.

    Memory stays bounded by one call's batches, whatever the size of `x`. `steps_per_call` batches
    run in each compiled call (None: chosen from the calls' times, see `StepsPerCall`); the outputs
    are the same whatever the count.
    """
    yield from Inference(model, steps_per_call).batches(as_split(x), batch_size, progress)


def predict_logits(model, x, batch_size=INFERENCE_BATCH, progress=None, steps_per_call=None):
    """Run `model` over `x` (an array or a `Split`) in batches; returns a float32 array.

    Args:
        model: a Keras model (use `kdcli.logits_model` to get a softmax teacher's logits).
        x: the inputs, an array with a leading sample axis, or a `kdcli.data.Split`.
        batch_size: samples per batch.
        progress: optional progress object, told about every batch.
        steps_per_call: batches per compiled call (None: chosen, see `iter_logits`).

    Returns:
        A NumPy array of shape `(len(x), outputs)`.
    """
    return Inference(model, steps_per_call)(as_split(x), batch_size, progress)


def accuracy(model, split, batch_size=INFERENCE_BATCH):
    """Top-1 accuracy of `model` on a `Split` (such as `data.test`), as a fraction."""
    logits = predict_logits(model, split, batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == split.y))

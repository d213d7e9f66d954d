"""Evaluation: accuracy on the held-out split, size, and latency measured properly.

Latency is the time of one single-sample call of a compiled inference
function (`tf.function`), after warm-up, over many calls: `model.predict`
carries a per-call overhead that would dominate small models.
"""

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from kdcli._tf import tf
from kdcli.artifacts import load_model, read_provenance
from kdcli.models import check_compatible, count_params, logits_model
from kdcli.training import predict_logits

SCHEMA = "kdcli.evaluate/1"
WARMUP_CALLS = 20
THROUGHPUT_BATCH = 256


def measure_latency(model, sample, runs=200, warmup=WARMUP_CALLS):
    """Median and 95th-percentile time, in ms, of one single-sample call.

    Args:
        model: a Keras model.
        sample: one input, with a leading batch axis of 1.
        runs: timed calls after `warmup` untimed ones.

    Returns:
        `(median_ms, p95_ms)`.
    """
    infer = tf.function(lambda b: model(b, training=False))
    x = tf.constant(np.asarray(sample, dtype=np.float32))
    for _ in range(warmup):
        infer(x).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        infer(x).numpy()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def measure_throughput(model, x, batch_size=THROUGHPUT_BATCH, repeats=5):
    """Samples per second of batched inference, best of `repeats` passes over one batch."""
    infer = tf.function(lambda b: model(b, training=False))
    batch = tf.constant(np.asarray(x[:batch_size], dtype=np.float32))
    infer(batch).numpy()
    best = min(_timed(lambda: infer(batch).numpy()) for _ in range(repeats))
    return int(batch.shape[0]) / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def evaluate_models(paths, data, batch_size=256, latency_runs=200, unsafe=False):
    """Evaluate models on the test split of `data` and compare each to the first.

    Args:
        paths: `.keras` files; the first is the reference (usually the teacher).
        data: the `Dataset`.
        batch_size: samples per call when computing accuracy.
        latency_runs: single-sample calls timed per model.
        unsafe: allow models that hold code (`Lambda` layers).

    Returns:
        A JSON-ready dict (schema `kdcli.evaluate/1`): `data`, `latency`
        (how it was measured) and `models`, one entry per path with `path`,
        `accuracy`, `params`, `trainable_params`, `size_bytes`, `latency_ms`,
        `latency_p95_ms`, `throughput`, `agreement` and, after the first,
        `compression`, `speedup` and `accuracy_change_points`; a student
        distilled with `--baseline` also has `baseline_accuracy` (the same
        student trained from scratch) and `distillation_gain_points`.
    """
    entries, first_predictions = [], None
    for path in paths:
        model = logits_model(load_model(path, unsafe=unsafe))
        data.expect_classes(model.output_shape[-1], Path(path).name)
        check_compatible(model, data, Path(path).name)
        predictions = np.argmax(predict_logits(model, data.test, batch_size), axis=-1)
        if first_predictions is None:
            first_predictions = predictions
        total, trainable = count_params(model)
        median, p95 = measure_latency(model, data.test.read(np.arange(1)), runs=latency_runs)
        record = read_provenance(path) or {}
        entry = {
            "path": str(path),
            "kind": record.get("kind"),
            "accuracy": float(np.mean(predictions == data.y_test)),
            "params": total,
            "trainable_params": trainable,
            "size_bytes": Path(path).stat().st_size,
            "latency_ms": median,
            "latency_p95_ms": p95,
            "throughput": measure_throughput(model, data.test.read(np.arange(min(len(data.test), THROUGHPUT_BATCH)))),
            "agreement": float(np.mean(predictions == first_predictions)),
        }
        metrics = record.get("metrics") or {}
        same_data = (record.get("data") or {}).get("fingerprint") == data.fingerprint
        if "baseline_test_accuracy" in metrics and same_data:  # from `distill --baseline`
            entry["baseline_accuracy"] = metrics["baseline_test_accuracy"]
            entry["distillation_gain_points"] = 100 * (entry["accuracy"] - entry["baseline_accuracy"])
        entries.append(entry)
    reference = entries[0]
    for entry in entries[1:]:
        entry["compression"] = reference["params"] / entry["params"]
        entry["speedup"] = reference["latency_ms"] / entry["latency_ms"]
        entry["accuracy_change_points"] = 100 * (entry["accuracy"] - reference["accuracy"])
    return {
        "schema": SCHEMA,
        "data": data.describe() | {"split": "test"},
        "latency": {
            "method": f"median and p95 of {latency_runs} single-sample calls of a compiled "
            f"tf.function after {WARMUP_CALLS} warm-up calls; throughput at batch {THROUGHPUT_BATCH}",
            "runs": latency_runs,
            "warmup": WARMUP_CALLS,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
            "tensorflow": tf.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "models": entries,
    }

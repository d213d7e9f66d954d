"""Evaluation: accuracy on the held-out split, size, latency measured properly, gates.

Latency is the time of one single-sample call of a compiled inference
function (a `tf.function`, or the TFLite interpreter's `invoke`), after
warm-up, over many calls: `model.predict` carries a per-call overhead that
would dominate small models.
"""

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from kdcli._tf import tf
from kdcli.artifacts import read_provenance
from kdcli.files import artifact_size
from kdcli.inference import predict_logits
from kdcli.model_files import load_model, model_format
from kdcli.models import check_compatible, count_params, logits_model
from kdcli.tflite import TFLiteRunner

SCHEMA = "kdcli.evaluate/1"
WARMUP_CALLS = 20
ROUNDS = 5
THROUGHPUT_BATCH = 256


def measure_latency(call, sample, runs=200, warmup=WARMUP_CALLS, rounds=ROUNDS):
    """Median and 95th-percentile time, in ms, of `call(sample)`.

    The timed calls are split into `rounds` rounds; the result is the median
    and p95 of the quietest round (the lowest median). On a shared machine a
    busy neighbour slows whole stretches of calls: the quietest round is what
    the model costs, and repeats well from one run to the next.

    Args:
        call: runs inference on one batch and returns its result as NumPy.
        sample: one input, with a leading batch axis of 1.
        runs: timed calls in all, after `warmup` untimed ones.

    Returns:
        `(median_ms, p95_ms)`.
    """
    for _ in range(warmup):
        call(sample)
    per_round = max(runs // rounds, 1)
    best = None
    for _ in range(rounds):
        times = []
        for _ in range(per_round):
            start = time.perf_counter()
            call(sample)
            times.append((time.perf_counter() - start) * 1000)
        result = statistics.median(times), float(np.percentile(times, 95))
        best = result if best is None or result[0] < best[0] else best
    return best


def measure_throughput(call, batch, repeats=5):
    """Samples per second of `call(batch)`, best of `repeats` timed calls after one warm-up."""
    call(batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


class KerasRunner:
    """A Keras model (`.keras`, legacy `.h5` or a SavedModel folder), run through a compiled `tf.function`.

    Its parameters are counted on the model as saved, head included.
    """

    def __init__(self, path, unsafe=False, data=None):
        loaded = load_model(path, unsafe=unsafe, data=data)
        self.format = model_format(path)
        self.model = logits_model(loaded, Path(path).name)
        self.num_outputs = self.model.output_shape[-1]
        self.params, self.trainable_params = count_params(loaded)
        self._infer = tf.function(lambda b: self.model(b, training=False), reduce_retracing=True)

    def check(self, data, name):
        check_compatible(self.model, data, name)

    def predict(self, split, batch_size):
        return predict_logits(self.model, split, batch_size)

    def call(self, x):
        text = np.asarray(x).dtype.kind in "USO"  # strings go to the model as they are
        return self._infer(tf.constant(x, None if text else tf.float32)).numpy()


def open_model(path, unsafe=False, data=None):
    """A runner for a `.tflite` file or any model `kdcli.model_files.load_model` reads (`data`: as there)."""
    if Path(path).suffix == ".tflite":
        return TFLiteRunner(path)
    return KerasRunner(path, unsafe, data)


def evaluate_models(paths, data, batch_size=256, latency_runs=200, unsafe=False):
    """Evaluate models on the test split of `data` and compare each to the first.

    Args:
        paths: `.keras` or `.tflite` files; the first is the reference (usually the teacher).
        data: the `Dataset`.
        batch_size: samples per call when computing accuracy.
        latency_runs: single-sample calls timed per model.
        unsafe: allow models that hold code (`Lambda` layers).

    Returns:
        A JSON-ready dict (schema `kdcli.evaluate/1`): `data`, `latency`
        (how it was measured) and `models`, one entry per path with `path`,
        `format`, `accuracy`, `top5_accuracy` (more than 5 classes),
        `params`, `trainable_params`, `size_bytes`, `latency_ms`,
        `latency_p95_ms`, `throughput`, `agreement` and, after the first,
        `compression` (parameters), `size_ratio`, `speedup` and
        `accuracy_change_points`; a student distilled with `--baseline` also
        has `baseline_accuracy` and `distillation_gain_points`; a model kdcli
        trained has `epochs`, and `best_epoch` when it stopped on its
        validation split (`--epochs auto`).
    """
    entries, first_predictions = [], None
    sample = data.test.read(np.arange(1))
    batch = data.test.read(np.arange(min(len(data.test), THROUGHPUT_BATCH)))
    for path in paths:
        runner = open_model(path, unsafe, data)
        if not entries:  # the first model sets the classes; the others must have as many
            data.expect_classes(runner.num_outputs, Path(path).name)
        runner.check(data, Path(path).name)
        logits = runner.predict(data.test, batch_size)
        predictions = np.argmax(logits, axis=-1)
        if first_predictions is None:
            first_predictions = predictions
        median, p95 = measure_latency(runner.call, sample, runs=latency_runs)
        record = read_provenance(path) or {}
        entry = {
            "path": str(path),
            "format": "tflite" if isinstance(runner, TFLiteRunner) else runner.format,
            "kind": record.get("kind"),
            "accuracy": float(np.mean(predictions == data.y_test)),
            "params": runner.params,
            "trainable_params": runner.trainable_params,
            "size_bytes": artifact_size(path),
            "latency_ms": median,
            "latency_p95_ms": p95,
            "throughput": measure_throughput(runner.call, batch),
            "agreement": float(np.mean(predictions == first_predictions)),
        }
        # The distillation method of a student (or of the student an export was made from).
        entry["method"] = record.get("method") or (record.get("hyperparameters") or {}).get("method")
        if data.num_classes > 5:
            top5 = np.argsort(logits, axis=-1)[:, -5:]
            entry["top5_accuracy"] = float(np.mean(np.any(top5 == data.y_test[:, None], axis=-1)))
        metrics = record.get("metrics") or {}
        if metrics.get("epochs"):  # how long it trained (`best_epoch`: where `--epochs auto` stopped)
            entry.update({key: metrics[key] for key in ("epochs", "best_epoch") if key in metrics})
        if metrics.get("compress"):  # from `kdcli compress`: the target it met, and the trial that won
            entry["compress"] = metrics["compress"]
        same_data = (record.get("data") or {}).get("fingerprint") == data.fingerprint
        if "baseline_test_accuracy" in metrics and same_data:  # from `distill --baseline`
            entry["baseline_accuracy"] = metrics["baseline_test_accuracy"]
            entry["distillation_gain_points"] = 100 * (entry["accuracy"] - entry["baseline_accuracy"])
        entries.append(entry)
    reference = entries[0]
    for entry in entries[1:]:
        entry["compression"] = reference["params"] / entry["params"] if reference["params"] and entry["params"] else None
        entry["size_ratio"] = reference["size_bytes"] / entry["size_bytes"]
        entry["speedup"] = reference["latency_ms"] / entry["latency_ms"]
        entry["accuracy_change_points"] = 100 * (entry["accuracy"] - reference["accuracy"])
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return {
        "schema": SCHEMA,
        "data": data.describe() | {"split": "test"},
        "latency": {
            "method": f"{latency_runs} single-sample calls after {WARMUP_CALLS} warm-up calls, in {ROUNDS} rounds; "
            f"median and p95 of the quietest round (Keras: a compiled tf.function; TFLite: interpreter.invoke); "
            f"throughput: best of 5 calls at batch {len(batch)}",
            "runs": latency_runs,
            "warmup": WARMUP_CALLS,
            "rounds": ROUNDS,
            "threads": threads,
            "tensorflow": tf.__version__,
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
        },
        "models": entries,
    }


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_gates(report, min_accuracy=None, max_accuracy_drop=None):
    """Check quality gates and record every result in `report["gates"]`.

    Args:
        report: an `evaluate_models` report.
        min_accuracy: every model's accuracy must be at least this fraction.
        max_accuracy_drop: every model after the first may lose at most this
            many percentage points of accuracy against the first.

    Returns:
        The failed gates: dicts with `model`, `gate`, `threshold`, `value`, `passed`.
    """
    results = []
    for i, m in enumerate(report["models"]):
        if min_accuracy is not None:
            results.append({"model": m["path"], "gate": "min_accuracy", "threshold": min_accuracy,
                            "value": m["accuracy"], "passed": m["accuracy"] >= min_accuracy})
        if max_accuracy_drop is not None and i > 0:
            drop = -m["accuracy_change_points"]
            results.append({"model": m["path"], "gate": "max_accuracy_drop", "threshold": max_accuracy_drop,
                            "value": drop, "passed": drop <= max_accuracy_drop + 1e-9})
    report["gates"] = results
    return [g for g in results if not g["passed"]]


def describe_failure(gate):
    """One line saying which model failed which gate, and by how much."""
    if gate["gate"] == "min_accuracy":
        return (f"{gate['model']}: accuracy {100 * gate['value']:.2f}% is below --min-accuracy "
                f"{gate['threshold']} ({100 * gate['threshold']:.2f}%)")
    return (f"{gate['model']}: accuracy dropped {gate['value']:.2f} points from the first model, more than "
            f"--max-accuracy-drop {gate['threshold']}")

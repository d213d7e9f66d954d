"""Training past one device: TensorFlow's own distribution strategies.

`--strategy` picks one; the model, optimizer and training state are built in
its scope, and the training step runs through `strategy.run`, so the same
code trains on one CPU, on the GPUs of one machine (`MirroredStrategy`) and
across machines (`MultiWorkerMirroredStrategy`, configured by `TF_CONFIG`).

`--batch-size` is per replica: a step takes `batch_size * replicas` samples.
For tests on a CPU-only machine, `KDCLI_CPU_DEVICES=N` splits the CPU into N
logical devices (see `kdcli._tf`), so `mirrored` has replicas to mirror on.
"""

import json
import os

from kdcli.errors import KdcliError, UsageError
from kdcli.specs import STRATEGIES


def make_strategy(name="default"):
    """A `tf.distribute.Strategy` by its `--strategy` name.

    `auto` is `mirrored` when several GPUs are visible and `default` otherwise;
    `mirrored` mirrors over the local GPUs, or the logical CPUs when there are
    no GPUs; `multi-worker` needs the `TF_CONFIG` environment variable.
    """
    from kdcli._tf import tf

    if name not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "multi-worker":  # first: it must be made before anything starts TensorFlow's runtime
        return _multi_worker(tf)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def _multi_worker(tf):
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise UsageError("--strategy multi-worker needs the TF_CONFIG environment variable (cluster and task)")
    try:
        json.loads(config)["cluster"]
    except (ValueError, KeyError, TypeError) as e:
        raise KdcliError(f"TF_CONFIG is not a valid cluster description ({e})") from e
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_multi_worker(strategy):
    """Whether this process is one worker of several (a multi-worker cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is not None and len(resolver.cluster_spec().as_dict()) > 0 and \
        sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def is_chief(strategy):
    """Whether this process writes artifacts and checkpoints: always, except the
    non-chief workers of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def worker_id(strategy):
    """This process's task id within its multi-worker cluster (0 elsewhere)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return getattr(resolver, "task_id", 0) or 0

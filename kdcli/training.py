"""The one training path: a custom loop shared by teachers and students.

Training a teacher on hard labels, offline distillation (teacher logits read
from a soft-label file) and online distillation (a live teacher computes the
logits of each batch) differ only in the per-sample loss and in where a
batch's teacher logits come from. The loss, optimizer and progress reporting
are the same code.

Why not `model.fit`: a custom `tf.function` step keeps direct control of the
loss averaging (`tf.nn.compute_average_loss`, ready for `tf.distribute`), of
speed, and of what happens between epochs.
"""

import time

import numpy as np

from kdcli._tf import keras, tf
from kdcli.errors import KdcliError
from kdcli.losses import distillation_loss_per_sample, hard_label_loss_per_sample


def train(model, data, epochs=20, batch_size=64, learning_rate=1e-3, seed=0, progress=None):
    """Train a model on the hard labels of `data.x_train, data.y_train`.

    Args:
        model: a Keras model that outputs logits.
        data: the `Dataset`.
        epochs, batch_size, learning_rate: the budget and the Adam step size.
        seed: seeds the shuffling and any dropout, so a run is repeatable.
        progress: optional object with `start(total_steps)`, `advance(logs)`
            and `stop()`, told about every step.

    Returns:
        A dict: per-epoch `loss` and `accuracy` on the training split, `seconds`.

    Example:
        >>> teacher = build_model("cnn", data)
        >>> history = train(teacher, data, epochs=20)
    """
    return _fit(
        model, data, hard_label_loss_per_sample, None, None,
        epochs, batch_size, learning_rate, seed, progress,
    )


def distill(
    student, data, teacher_logits=None, teacher=None, temperature=4.0, alpha=0.9,
    epochs=30, batch_size=64, learning_rate=1e-3, seed=0, progress=None,
):
    """Train a student on `data` with the distillation loss.

    Give exactly one source of teacher logits: `teacher_logits`, an array of
    shape `(N, C)` whose row `i` belongs to training sample `i` (offline
    distillation, the teacher never runs), or `teacher`, a Keras model that
    outputs logits, run on each batch (online distillation).

    Args:
        student: the Keras model to train; it outputs logits.
        data: the `Dataset`.
        teacher_logits: precomputed logits of the training split.
        teacher: a live teacher (see `kdcli.logits_model` for softmax teachers).
        temperature: `T` of the KD term (default 4).
        alpha: weight of the KD term (default 0.9).
        epochs, batch_size, learning_rate, seed, progress: as in `train`.

    Returns:
        A dict: per-epoch `loss` and `accuracy` on the training split, `seconds`.
    """
    if (teacher_logits is None) == (teacher is None):
        raise ValueError("give exactly one of teacher_logits and teacher")
    if temperature <= 0:
        raise KdcliError(f"--temperature must be positive, got {temperature}")
    if not 0 <= alpha <= 1:
        raise KdcliError(f"--alpha must be between 0 and 1, got {alpha}")

    def loss(labels, student_logits, t):
        return distillation_loss_per_sample(labels, student_logits, t, temperature, alpha)

    return _fit(
        student, data, loss, teacher_logits, teacher,
        epochs, batch_size, learning_rate, seed, progress,
    )


def _fit(model, data, per_sample_loss, teacher_logits, teacher, epochs, batch_size, learning_rate, seed, progress):
    if epochs < 1 or batch_size < 1 or learning_rate <= 0:
        raise KdcliError("--epochs and --batch-size must be at least 1 and --learning-rate positive")
    keras.utils.set_random_seed(seed)
    optimizer = keras.optimizers.Adam(learning_rate)
    columns = (data.x_train, data.y_train) if teacher_logits is None else (
        data.x_train, data.y_train, np.asarray(teacher_logits, dtype=np.float32)
    )

    @tf.function(reduce_retracing=True)
    def train_step(x, y, *given_logits):
        if teacher is not None:
            t = teacher(x, training=False)
        else:
            t = given_logits[0] if given_logits else None
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.nn.compute_average_loss(per_sample_loss(y, logits, t))
            if model.losses:
                loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int64), y), tf.int64))
        return loss, correct

    n = len(data.y_train)
    steps = -(-n // batch_size)
    history = {"loss": [], "accuracy": []}
    if progress is not None:
        progress.start(epochs * steps)
    started = time.perf_counter()
    try:
        for epoch in range(epochs):
            total_loss, total_correct = 0.0, 0
            for batch in _batches(columns, batch_size, shuffle_seed=seed + epoch):
                loss, correct = train_step(*batch)
                loss = float(loss)
                if not np.isfinite(loss):
                    raise KdcliError(
                        f"the training loss became {loss} in epoch {epoch + 1}; "
                        "lower --learning-rate or check the data for extreme values"
                    )
                total_loss += loss * int(batch[1].shape[0])
                total_correct += int(correct)
                if progress is not None:
                    progress.advance({"epoch": epoch + 1, "loss": loss})
            history["loss"].append(total_loss / n)
            history["accuracy"].append(total_correct / n)
    finally:
        if progress is not None:
            progress.stop()
    history["seconds"] = time.perf_counter() - started
    return history


def _batches(columns, batch_size, shuffle_seed=None):
    """A tf.data pipeline over in-memory columns; inputs are cast to float32."""
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(columns[0]), seed=shuffle_seed)
    ds = ds.batch(batch_size).map(
        lambda x, *rest: (tf.cast(x, tf.float32), *rest), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def predict_logits(model, x, batch_size=256, progress=None):
    """Run `model` over `x` in batches and return its outputs as a float32 array.

    Args:
        model: a Keras model (use `kdcli.logits_model` to get a softmax teacher's logits).
        x: the inputs, any array-like with a leading sample axis.
        batch_size: samples per call.
        progress: optional progress object, told about every batch.

    Returns:
        A NumPy array of shape `(len(x), outputs)`.
    """
    return np.concatenate(list(iter_logits(model, x, batch_size, progress)), axis=0)


def iter_logits(model, x, batch_size=256, progress=None):
    """Yield the model's outputs for `x`, one batch at a time (bounded memory)."""
    infer = tf.function(lambda b: model(b, training=False), reduce_retracing=True)
    if progress is not None:
        progress.start(-(-len(x) // batch_size))
    try:
        for (batch,) in _batches((x,), batch_size):
            yield infer(batch).numpy().astype(np.float32)
            if progress is not None:
                progress.advance({})
    finally:
        if progress is not None:
            progress.stop()


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of `model` on `(x, y)`, as a fraction."""
    logits = predict_logits(model, x, batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))

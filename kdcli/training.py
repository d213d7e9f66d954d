"""The one training path: a custom loop shared by teachers and students.

Training a teacher on hard labels, offline distillation (teacher logits read
from a soft-label file) and online distillation (a live teacher computes the
logits of each batch) differ only in the per-sample loss and in where a
batch's teacher logits come from. The loss, optimizer, batching and progress
reporting are the same code.

Why not `model.fit`: a custom `tf.function` step keeps direct control of the
loss averaging (`tf.nn.compute_average_loss`, ready for `tf.distribute`), of
speed, and of what happens between epochs.
"""

import contextlib
import dataclasses
import signal
import threading
import time

import numpy as np

from kdcli._tf import keras, tf
from kdcli.augment import NEEDS_TEACHER, has_mixup, make_augment, mix, parse_augment, resolve_augment
from kdcli.checkpoints import Checkpoints, claim_checkpoints
from kdcli.console import plural
from kdcli.data import ArrayColumn, Column, Split, iterate, stratified_split, take_rows
from kdcli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, KdcliError, UsageError
from kdcli.faults import fault_point
from kdcli.logs import TrainingLog
from kdcli.methods import DEFAULT_METHOD, make_method
from kdcli.methods.hard import HardLabels
from kdcli.runs import PLATEAU_FACTOR, Budget, plateau_patience, refit_folder

# Training steps between two checks of the loss (each check waits for the device).
CHECK_EVERY = 16
# Samples per call when measuring the validation split.
VALIDATION_BATCH = 256
# Seconds between two checkpoints, by default (see the README's measurement).
CHECKPOINT_EVERY = 60.0
# Folded into a step's seed for mixup's random numbers, so that they differ from the shift's.
MIXUP_STREAM = 1


def train(model, data, budget=None, *, progress=None, checkpoint_dir=None, resume=False, restart=False,
          run_config=None, strategy=None, prune=None, checkpoint_every=CHECKPOINT_EVERY, log_dir=None, **options):
    """Train a model on the hard labels of the training split of `data`.

    Args:
        model: a Keras model that outputs logits.
        data: the `Dataset`.
        budget: a `kdcli.runs.Budget` (epochs, batch size, step size and its
            schedule, seed, augmentation), or its fields as keywords
            (`epochs=20` by default, `batch_size=64`, `learning_rate=1e-3`,
            `lr_schedule="constant"`, `seed=0`, `augment="none"`). With
            `epochs="auto"`, a stratified share of the training split
            (`validation`, 10%, drawn from the seed) is held out; after each
            epoch its accuracy and loss are measured, and the run stops once
            the accuracy has not improved for `patience` epochs (or at
            `max_epochs`), with the weights of its best epoch.
        progress: optional object with `start(total_steps)`, `advance(logs)`
            and `stop()`, told about every step, and optionally `say(line)`,
            told where a resumed run continues, and `epoch_end(epoch, epochs,
            logs, last)`, told each epoch's loss, accuracy, validation accuracy
            and seconds.
        checkpoint_dir: save checkpoints there: every `checkpoint_every`
            seconds at the first step or epoch boundary after, when the run
            ends, and on SIGINT or SIGTERM at the next step boundary (the
            process then exits with code 130 or 143). An unfinished run's
            checkpoint found there is refused unless `resume` or `restart`
            (see `kdcli.checkpoints.check_checkpoints`).
        resume: continue from the last good checkpoint in `checkpoint_dir`
            (the result equals an uninterrupted run's, up to float rounding).
        restart: discard a checkpoint found in `checkpoint_dir` and start over.
        run_config: more JSON-ready facts that identify the run (a teacher's
            sha256...): `resume` refuses checkpoints whose facts differ.
        strategy: a `tf.distribute.Strategy` (see `kdcli.distribute`) in whose
            scope `model` was built; the batch size is then per replica.
        prune: with `epochs="auto"`, a function of the validation accuracies
            so far that says whether to stop the run now (a tuner's rule
            for trials that fall behind); `stopped` is then `pruned`.
        checkpoint_every: seconds between two checkpoints (60 by default);
            0 checkpoints at the end of every epoch. A multi-worker run
            checkpoints at the end of every epoch whatever the value.
        log_dir: a folder for training logs (`kdcli.logs.TrainingLog`):
            per epoch, the loss and its parts, the training accuracy, the
            validation accuracy and loss, the step size and the seconds, as
            TensorBoard scalars and in `metrics.csv`.

    Returns:
        A dict: per-epoch `loss`, `accuracy` (on the training split) and
        `epoch_seconds`, and the total `seconds`; with `epochs="auto"` also
        per-epoch `val_accuracy` and `val_loss`, the `best_epoch` (1-based)
        whose weights the model now holds, and `stopped`: `patience`,
        `max-epochs` or `pruned` (by `prune`); with `lr_schedule="plateau"`
        also `lr_decays`, the epochs after which the step size was halved.

    Example:
        >>> teacher = build_model("cnn", data)
        >>> history = train(teacher, data, epochs=20, lr_schedule="cosine")
    """
    budget = _budget(budget, options, epochs=20)
    return _fit_and_refit(
        model, data, budget, method=HardLabels(), progress=progress, checkpoint_dir=checkpoint_dir, resume=resume,
        restart=restart, run_config=run_config, strategy=strategy, prune=prune, checkpoint_every=checkpoint_every,
        log_dir=log_dir,
    )


def distill(student, data, budget=None, *, teacher_logits=None, teacher=None, method=None, progress=None,
            checkpoint_dir=None, resume=False, restart=False, run_config=None, strategy=None, prune=None,
            checkpoint_every=CHECKPOINT_EVERY, log_dir=None, **options):
    """Train a student on `data` with a distillation method.

    Give exactly one source of teacher logits: `teacher_logits`, whose row
    `i` belongs to training sample `i` (offline distillation: the teacher
    never runs), or `teacher`, a Keras model that outputs logits, run on each
    batch (online distillation).

    Args:
        student: the Keras model to train; it outputs logits.
        data: the `Dataset`.
        budget: as in `train`; by default `epochs="auto"`. Its `augment`
            needs the live `teacher`, which then gives its logits for the same
            shifted copies the student sees.
        teacher_logits: an `(N, C)` array, or a `kdcli.data.Column` streaming
            them (`kdcli.read_soft_labels(path).column`).
        teacher: a live teacher (see `kdcli.logits_model` for softmax teachers).
        method: a `kdcli.methods.Method` (`KD()`, `DKD()`, `DIST()`, or
            `kdcli.methods.make_method(name, ...)`); by default Hinton's KD
            with `T = 4`, `alpha = 0.9`.
        progress, checkpoint_dir, resume, restart, run_config, strategy, prune, checkpoint_every, log_dir: as in
            `train`.
        **options: the budget's fields as keywords, when `budget` is not given.

    Returns:
        A dict, as `train`'s.

    Example:
        >>> distill(student, data, teacher_logits=logits, method=make_method("dkd", beta=2.0), epochs=50)
    """
    budget = _budget(budget, options)
    method = method or make_method(DEFAULT_METHOD)
    if not method.uses_teacher:
        raise ValueError(f"method {method.name} does not learn from a teacher: use train()")
    if (teacher_logits is None) == (teacher is None):
        raise ValueError("give exactly one of teacher_logits and teacher")
    if teacher_logits is not None and parse_augment(budget.augment):
        raise UsageError(NEEDS_TEACHER)
    method.check_teacher_source(live=teacher is not None)
    if teacher_logits is not None and not isinstance(teacher_logits, Column):
        teacher_logits = ArrayColumn(np.asarray(teacher_logits, dtype=np.float32), "teacher logits")
    return _fit_and_refit(
        student, data, budget, method=method, teacher_logits=teacher_logits, teacher=teacher, progress=progress,
        checkpoint_dir=checkpoint_dir, resume=resume, restart=restart, run_config=run_config, strategy=strategy,
        prune=prune, checkpoint_every=checkpoint_every, log_dir=log_dir,
    )


def _budget(budget, options, **defaults):
    """The `Budget` given, or one made from keywords (validated there, once)."""
    if budget is not None and options:
        raise TypeError(f"give a budget or its fields ({', '.join(options)}), not both")
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Budget)})
    if unknown:
        raise TypeError(f"unknown options {', '.join(unknown)}: a budget has {', '.join(Budget.__dataclass_fields__)}; "
                        "a method's parameters go in method= (kdcli.make_method('kd', temperature=2.0))")
    return budget or Budget(**{**defaults, **options})


def _fit_and_refit(model, data, budget, *, checkpoint_dir, **fit):
    """`_fit`; with `budget.refit`, then retrain from the same initial weights on the whole training
    split for the epochs of the best validation epoch (checkpointed in `<checkpoint_dir>-refit`)."""
    if not budget.refit:
        return _fit(model, data, budget, checkpoint_dir=checkpoint_dir, **fit)
    initial = model.get_weights()  # dropout's seed state too: the refit repeats a fresh run's randomness
    search = _fit(model, data, budget, checkpoint_dir=checkpoint_dir, **fit)
    model.set_weights(initial)
    refit_dir = None if checkpoint_dir is None else refit_folder(checkpoint_dir)
    fixed = dataclasses.replace(budget, epochs=search["best_epoch"], refit=False)
    if fit.get("log_dir") is not None:  # the refit logs in a folder of its own, like its checkpoints
        fit = {**fit, "log_dir": refit_folder(fit["log_dir"])}
    history = _fit(model, data, fixed, checkpoint_dir=refit_dir, **fit)
    history.update({key: search[key] for key in ("best_epoch", "stopped", "val_accuracy", "val_loss")},
                   refit=True, search_epochs=len(search["loss"]), seconds=search["seconds"] + history["seconds"])
    return history


def _fit(model, data, budget, *, method, teacher_logits=None, teacher=None, progress, checkpoint_dir, resume,
         restart, run_config, strategy, prune=None, checkpoint_every=CHECKPOINT_EVERY, log_dir=None):
    """The training loop: `method`'s loss, with teacher logits from `teacher_logits` or a live `teacher`."""
    from kdcli.distribute import is_chief, is_multi_worker, worker_id

    loss_config = {"method": method.config(), **(run_config or {})}
    epochs = budget.max_epochs if budget.auto else budget.epochs
    batch_size, learning_rate, seed = budget.batch_size, budget.learning_rate, budget.seed
    lr_schedule = budget.lr_schedule
    decaying = lr_schedule == "plateau"  # lowered by the validation split (see _plateau)
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    extra = () if teacher_logits is None else (teacher_logits,)
    train_split, validate = data.train, None
    if budget.auto:
        # The validation rows go unused in training (soft labels cover them: their rows are dropped too).
        kept, held_out = stratified_split(data.train.y, budget.validation, seed)
        train_split = data.train.take(kept)
        extra = tuple(take_rows(column, kept) for column in extra)
        validate = _validator(model, data.train.take(held_out))
        loss_config = {**loss_config, "epochs": "auto", "patience": budget.patience, "max_epochs": epochs,
                       "validation": budget.validation}
    augment = resolve_augment(budget.augment, data.input_shape, data.input_kind)
    shift = make_augment(augment, data.input_shape)
    mixup = has_mixup(augment)
    if augment != "none":
        loss_config = {**loss_config, "augment": augment}
    global_batch = batch_size * strategy.num_replicas_in_sync
    n = len(train_split)
    steps = -(-n // global_batch)
    with strategy.scope():
        rate = learning_rate
        if lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
            loss_config = {**loss_config, "epochs": epochs}  # the schedule spans the run: resume keeps it
        optimizer = keras.optimizers.Adam(rate)
        method.build(model, teacher)
        trained = [*model.trainable_variables, *method.variables]
        optimizer.build(trained)
        # Running sums live on the device(s): reading them waits for the step, so the
        # loop reads them only every CHECK_EVERY steps and at the end of an epoch.
        summed = {"synchronization": tf.VariableSynchronization.ON_READ, "aggregation": tf.VariableAggregation.SUM,
                  "trainable": False}
        loss_sum = tf.Variable(0.0, dtype=tf.float64, **summed)
        correct_sum = tf.Variable(0, dtype=tf.int64, **summed)
        last_loss = tf.Variable(0.0, dtype=tf.float32, **summed)
        # The loss's parts, summed for the training logs only.
        term_sums = {name: tf.Variable(0.0, dtype=tf.float64, **summed)
                     for name in (method.term_names if log_dir is not None else ())}

    def replica_step(step_seed, epoch_number, x, y, *given_logits):
        labels = y
        # Augmentation comes before the teacher runs: it sees the same inputs as the student.
        replica_seed = tf.random.experimental.stateless_fold_in(
            step_seed, tf.distribute.get_replica_context().replica_id_in_sync_group)
        if shift is not None:
            x = shift(x, replica_seed)
        if mixup:
            x, partner, weight = mix(x, tf.random.experimental.stateless_fold_in(replica_seed, MIXUP_STREAM))
        if teacher is not None:
            t, t_features = method.teacher_outputs(teacher, x)
        else:
            t, t_features = (given_logits[0] if given_logits else None), None
        with tf.GradientTape() as tape:
            logits, s_features = method.student_outputs(model, x)
            if mixup:
                per_sample, batch_term, y = mixup_loss(method, y, partner, weight, logits, t, epoch_number)
            else:
                per_sample, batch_term = method.loss(y, logits, t, epoch_number)
            if s_features is not None:
                feature_part = method.feature_loss(s_features, t_features)
                per_sample += feature_part
            # Averaged over the global batch (counted, since the last one is smaller and may be
            # split unevenly), so summing the replicas' gradients gives the mean over the batch.
            local_size = tf.shape(per_sample)[0]
            global_size = tf.distribute.get_replica_context().all_reduce("sum", local_size)
            loss = tf.nn.compute_average_loss(per_sample, global_batch_size=global_size)
            if batch_term is not None:  # a statistic of each replica's share, weighted by that share
                loss += batch_term * tf.cast(local_size, batch_term.dtype) / tf.cast(global_size, batch_term.dtype)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        if term_sums:
            terms = method.loss_terms(labels, logits, t, epoch_number)
            if mixup:  # weighted like the loss: see mixup_loss
                partner_terms = method.loss_terms(tf.gather(labels, partner), logits, t, epoch_number)
                terms = {k: _weigh(weight, v, partner_terms[k]) for k, v in terms.items()}
            if s_features is not None:
                terms["feature_term"] = feature_part
            for name, value in terms.items():  # a batch statistic counts once per sample, like batch_term
                value = tf.cast(value, tf.float64)
                term_sums[name].assign_add(tf.reduce_sum(value) if value.shape.rank == 1
                                           else value * tf.cast(local_size, tf.float64))
        grads = tape.gradient(loss, trained)
        optimizer.apply_gradients(zip(grads, trained))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int64), y), tf.int64))
        summed_loss = tf.reduce_sum(tf.cast(per_sample, tf.float64))
        if batch_term is not None:  # counted per sample, like the rest, for the epoch's mean loss
            summed_loss += tf.cast(batch_term, tf.float64) * tf.cast(local_size, tf.float64)
        loss_sum.assign_add(summed_loss)
        correct_sum.assign_add(correct)
        # A non-finite loss sticks in last_loss until the loop reads it.
        last_loss.assign(tf.where(tf.math.is_finite(last_loss), tf.cast(loss, tf.float32), last_loss))

    @tf.function(reduce_retracing=True)
    def train_step(*batch):
        strategy.run(replica_step, args=batch)

    checkpoints = None
    history, first_epoch, best = {"loss": [], "accuracy": []}, 0, None
    if checkpoint_dir is not None:
        config = {"fingerprint": data.fingerprint, "weights": [list(w.shape) for w in model.weights],
                  "dtype_policies": sorted({layer.dtype_policy.name for layer in model.layers}),
                  "batch_size": batch_size, "replicas": strategy.num_replicas_in_sync,
                  "learning_rate": learning_rate, "lr_schedule": lr_schedule, "seed": seed,
                  **loss_config}
        checkpoints = Checkpoints(checkpoint_dir, model, optimizer, config, is_chief(strategy), worker_id(strategy),
                                  extra=method.variables)
        claim_checkpoints(checkpoint_dir, resume, restart)
        if resume:
            first_epoch, saved_history = checkpoints.restore()
            history, best = saved_history or history, checkpoints.best
            started = first_epoch + (1 if checkpoints.partial else 0)  # an epoch begun counts: it must finish
            if started > epochs:
                raise KdcliError(
                    f"{checkpoint_dir}: the checkpoint has {plural(first_epoch, 'epoch')} done"
                    f"{' and one begun' if checkpoints.partial else ''}, more than --epochs {epochs}; "
                    f"give --epochs {started} or more"
                )
            partial = checkpoints.partial
            if (first_epoch or partial) and hasattr(progress, "say"):
                rest = f", continuing with epoch {first_epoch + 1}" if first_epoch < epochs and \
                    not history.get("stopped") else ""
                rest += f" after its step {partial['step']}" if partial else ""
                progress.say(f"resuming from {checkpoint_dir}: {first_epoch} of {epochs} epochs done{rest}")
    partial = checkpoints.partial if checkpoints is not None else None
    log = TrainingLog(log_dir, epochs_done=first_epoch) if log_dir is not None and is_chief(strategy) else None
    if progress is not None:
        progress.start(max(epochs - first_epoch, 0) * steps - (partial["step"] if partial else 0))
    started = time.perf_counter()
    epoch = first_epoch
    # In a multi-worker run every worker must take part in each checkpoint: at epoch ends only,
    # and a signal is left to stop the process as it would (see the README).
    by_time = not is_multi_worker(strategy)
    saved = {"at": time.monotonic(), "best_epoch": history.get("best_epoch")}

    def sums():
        """The epoch's summed loss, correct answers and loss parts so far, those of steps before a resume included."""
        return (carried[0] + float(loss_sum.numpy()), carried[1] + int(correct_sum.numpy()),
                {name: carried[2].get(name, 0.0) + float(total.numpy()) for name, total in term_sums.items()})

    def save(epochs_done, step=0, seconds=0.0):
        """A checkpoint after `epochs_done` epochs and `step` steps of the next."""
        new_best = history.get("best_epoch") != saved["best_epoch"]
        partial = dict(zip(("step", "loss_sum", "correct", "terms", "seconds"), (step, *sums(), seconds))) \
            if step else None
        checkpoints.save(epochs_done, history, best=best if new_best else None, partial=partial)
        saved.update(at=time.monotonic(), best_epoch=history.get("best_epoch"))

    try:
        with _stop_requests(enabled=checkpoints is not None and by_time) as stop:
            for epoch in range(first_epoch, epochs if not history.get("stopped") else first_epoch):
                # An epoch resumed from a checkpoint taken inside it continues after its steps done.
                done = partial["step"] if partial and epoch == first_epoch else 0
                epoch_started = time.perf_counter() - (partial["seconds"] if done else 0.0)
                # Kept apart from the device sums: a SUM variable split over replicas would round them.
                carried = (partial["loss_sum"], partial["correct"], partial.get("terms", {})) if done else (0.0, 0, {})
                for total in term_sums.values():
                    total.assign(0.0)
                loss_sum.assign(0.0)
                correct_sum.assign(0)
                last_loss.assign(0.0)
                # A fresh order each epoch, from (seed, epoch) alone: repeatable, and resumable.
                epoch_number = tf.constant(epoch + 1, tf.float32)  # 1-based, for methods that warm up
                batches = train_split.batches(global_batch, shuffle_seed=(seed, epoch), extra=extra).skip(done)
                options = tf.data.Options()
                options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
                batches = strategy.experimental_distribute_dataset(batches.with_options(options))
                for step, batch in enumerate(iterate(batches), start=done + 1):
                    # The shifts of a step depend on (seed, epoch, step) alone, like the shuffles.
                    train_step(tf.constant([seed, epoch * steps + step], tf.int64), epoch_number, *batch)
                    if step % CHECK_EVERY == 0:
                        _check_finite(last_loss, epoch, checkpoints)
                    if progress is not None:
                        progress.advance({"epoch": epoch + 1, **_last_validation(history)})
                    fault_point("step")
                    if checkpoints is not None and step < steps and (stop or (
                            by_time and checkpoint_every > 0 and time.monotonic() - saved["at"] >= checkpoint_every)):
                        _check_finite(last_loss, epoch, checkpoints)
                        save(epoch, step, time.perf_counter() - epoch_started)
                        if stop:
                            raise _Stopped(stop["signal"], epoch, step, steps, checkpoints.directory)
                _check_finite(last_loss, epoch, checkpoints)
                summed_loss, correct, summed_terms = sums()
                history["loss"].append(summed_loss / n)
                history["accuracy"].append(correct / n)
                history.setdefault("epoch_seconds", []).append(time.perf_counter() - epoch_started)
                # The epoch's last step's step size, for the log (a mirrored variable under a strategy).
                rate_used = float(tf.convert_to_tensor(optimizer.learning_rate)) if log is not None else None
                if validate is not None:
                    if _early_stopping(history, *validate(), epoch, budget.patience, epochs):
                        best = model.get_weights()
                    if prune is not None and not history.get("stopped") and prune(history["val_accuracy"]):
                        history["stopped"] = "pruned"
                    # The new step size is a variable of the optimizer: checkpoints keep it.
                    if decaying and _plateau(history, epoch, budget.patience):
                        optimizer.learning_rate = learning_rate * PLATEAU_FACTOR ** len(history["lr_decays"])
                last = bool(history.get("stopped")) or epoch + 1 == epochs
                # At the end of the run too, so that a finished run's checkpoint holds its result.
                saved_now = checkpoints is not None and (last or stop or not by_time or checkpoint_every == 0 or
                                                         time.monotonic() - saved["at"] >= checkpoint_every)
                if saved_now:
                    save(epoch + 1)
                if log is not None:
                    scalars = _epoch_logs(history)
                    log.write(epoch + 1, {"loss": scalars.pop("loss"), **{k: v / n for k, v in summed_terms.items()},
                                          **{k: v for k, v in scalars.items() if k != "seconds"},
                                          **({"val_loss": history["val_loss"][-1]} if validate else {}),
                                          "learning_rate": rate_used, "seconds": scalars["seconds"]})
                if hasattr(progress, "epoch_end"):
                    progress.epoch_end(epoch + 1, epochs, _epoch_logs(history), last=last)
                if stop:  # a signal while the epoch was logged: its checkpoint first
                    if not saved_now:
                        save(epoch + 1)
                    raise _Stopped(stop["signal"], epoch + 1, 0, steps, checkpoints.directory)
                if history.get("stopped"):
                    break
    except KeyboardInterrupt:  # without checkpoints, or a second Ctrl-C while a checkpoint was written
        if checkpoints is None:
            raise
        raise KdcliError(
            f"interrupted in epoch {epoch + 1}; the last checkpoint in {checkpoints.directory} is kept: "
            "run the same command with --resume to continue from it", EXIT_INTERRUPTED,
        ) from None
    finally:
        if progress is not None:
            progress.stop()
        if log is not None:
            log.close()
    if validate is not None and best is not None:
        model.set_weights(best)  # the best epoch's, as measured on the validation split
    history["seconds"] = time.perf_counter() - started
    return history


def mixup_loss(method, labels, partner, weight, logits, teacher_logits, epoch):
    """`method`'s loss on a mixed batch (see `kdcli.augment.mix`): each input's loss for its
    own label, weighted by `weight`, plus for its partner's, by `1 - weight`.

    Terms that do not depend on the labels (a teacher's) come out unchanged.

    Returns:
        `(per_sample, batch_term, labels)`: as `method.loss`, and the label of
        each input's larger share, for counting training accuracy.
    """
    partner_labels = tf.gather(labels, partner)
    own, batch_term = method.loss(labels, logits, teacher_logits, epoch)
    other, partner_term = method.loss(partner_labels, logits, teacher_logits, epoch)
    return (_weigh(weight, own, other), None if batch_term is None else _weigh(weight, batch_term, partner_term),
            tf.where(weight >= 0.5, labels, partner_labels))


def _weigh(weight, own, partner):
    """Mixup's weighting of a loss for an input's own label and its partner's: per sample for
    `(batch,)` losses, by the batch's mean weight for a statistic of the batch (a scalar)."""
    share = weight if own.shape.rank == 1 else tf.reduce_mean(weight)
    return share * own + (1 - share) * partner


class _Stopped(KdcliError):
    """A run stopped by SIGINT or SIGTERM after saving a checkpoint at a step boundary."""

    def __init__(self, signum, epochs_done, step, steps, directory):
        name, code = ("interrupted", EXIT_INTERRUPTED) if signum == signal.SIGINT else \
            ("stopped by SIGTERM", EXIT_TERMINATED)
        where = f"in epoch {epochs_done + 1} after step {step} of {steps}" if step else \
            f"after epoch {epochs_done}"
        super().__init__(f"{name} {where}; saved in {directory}: run the same command with --resume to continue",
                         code)


@contextlib.contextmanager
def _stop_requests(enabled):
    """While training: SIGINT and SIGTERM ask the loop to stop at the next step boundary,
    after a checkpoint (`stop["signal"]` is then set); a second SIGINT stops at once."""
    stop = {}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum, frame):
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop["signal"] = signum

    previous = {signum: signal.signal(signum, request) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _validator(model, split):
    """A function measuring `model` on a validation split: `(accuracy, mean cross-entropy)`."""
    infer = tf.function(lambda b: model(b, training=False), reduce_retracing=True)

    def validate():
        logits = np.concatenate([infer(x).numpy().astype(np.float64)
                                 for x, _ in iterate(split.batches(VALIDATION_BATCH))])
        shifted = logits - logits.max(axis=1, keepdims=True)  # a stable log-softmax
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(np.mean(logits.argmax(1) == split.y)), float(-np.mean(log_p[np.arange(len(split)), split.y]))

    return validate


def _early_stopping(history, accuracy, loss, epoch, patience, max_epochs):
    """Record an epoch's validation scores in `history` and decide whether the run goes on.

    An epoch improves on the best when its validation accuracy is higher, or
    equal with a lower loss. The run stops (`history["stopped"]`) after
    `patience` epochs without improvement, or at `max_epochs`.

    Returns:
        Whether this epoch is the new best.
    """
    history.setdefault("val_accuracy", []).append(accuracy)
    history.setdefault("val_loss", []).append(loss)
    best = history.get("best_epoch")
    improved = best is None or (accuracy, -loss) > (history["val_accuracy"][best - 1], -history["val_loss"][best - 1])
    if improved:
        history["best_epoch"] = best = epoch + 1
    if epoch + 1 - best >= patience:
        history["stopped"] = "patience"
    elif epoch + 1 >= max_epochs:
        history["stopped"] = "max-epochs"
    return improved


def _plateau(history, epoch, patience):
    """`--lr-schedule plateau`: whether to lower the step size after this epoch, recorded in
    `history["lr_decays"]`: once `plateau_patience(patience)` epochs have passed without a better
    validation score since the best epoch and since the last decay, unless the run stops here.

    With the default patience of 20 the step size halves after 5, 10 and 15 epochs without
    improvement, and the run stops after 20: it anneals like a cosine, for as long as the data needs.
    """
    decays = history.setdefault("lr_decays", [])
    since = max([history["best_epoch"], *decays[-1:]])
    if history.get("stopped") or epoch + 1 - since < plateau_patience(patience):
        return False
    decays.append(epoch + 1)
    return True


def _epoch_logs(history):
    """The last epoch's figures, for a log line."""
    logs = {"loss": history["loss"][-1], "accuracy": history["accuracy"][-1]}
    if history.get("val_accuracy"):
        logs["val_accuracy"] = history["val_accuracy"][-1]
    return {**logs, "seconds": history["epoch_seconds"][-1]}


def _last_validation(history):
    return {"val_acc": history["val_accuracy"][-1]} if history.get("val_accuracy") else {}


class NonFiniteLoss(KdcliError):
    """The training loss became NaN or infinite (exit code 4)."""


def _check_finite(last_loss, epoch, checkpoints):
    loss = float(last_loss.numpy())
    if not np.isfinite(loss):
        kept = f"; the last good checkpoint (epoch {epoch}) is kept" if checkpoints and epoch else ""
        raise NonFiniteLoss(
            f"the training loss became {loss} in epoch {epoch + 1}: lower --learning-rate "
            f"or check the data for extreme values{kept}"
        )


def _as_split(x):
    if isinstance(x, Split):
        return x
    x = np.asarray(x)
    return Split(ArrayColumn(x, "inputs"), None, np.zeros(len(x), np.int64))


def iter_logits(model, x, batch_size=256, progress=None):
    """Yield the model's outputs for `x` (an array or a `Split`), one batch at a time.

    Memory stays bounded by one batch, whatever the size of `x`.
    """
    split = _as_split(x)
    infer = tf.function(lambda b: model(b, training=False), reduce_retracing=True)
    if progress is not None:
        progress.start(-(-len(split) // batch_size))
    try:
        for x_batch, _ in iterate(split.batches(batch_size)):
            yield infer(x_batch).numpy().astype(np.float32)
            if progress is not None:
                progress.advance({})
    finally:
        if progress is not None:
            progress.stop()


def predict_logits(model, x, batch_size=256, progress=None):
    """Run `model` over `x` (an array or a `Split`) in batches; returns a float32 array.

    Args:
        model: a Keras model (use `kdcli.logits_model` to get a softmax teacher's logits).
        x: the inputs, an array with a leading sample axis, or a `kdcli.data.Split`.
        batch_size: samples per call.
        progress: optional progress object, told about every batch.

    Returns:
        A NumPy array of shape `(len(x), outputs)`.
    """
    return np.concatenate(list(iter_logits(model, x, batch_size, progress)), axis=0)


def accuracy(model, split, batch_size=256):
    """Top-1 accuracy of `model` on a `Split` (such as `data.test`), as a fraction."""
    logits = predict_logits(model, split, batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == split.y))

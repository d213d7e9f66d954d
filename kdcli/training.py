"""The one training path: a custom loop shared by teachers and students.

Training a teacher on hard labels, offline distillation (teacher logits read
from a soft-label file) and online distillation (a live teacher computes the
logits of each batch) differ only in the per-sample loss and in where a
batch's teacher logits come from. The loss, optimizer, batching and progress
reporting are the same code.

The loop has three parts: a `TrainStep` (`build_step`), which owns the
compiled `tf.function` step, the optimizer and the running sums kept on the
device(s); a `kdcli.hooks.TrainState`, where the run is (epoch, step, history,
the sums carried from before a resume); and `_fit`, a short loop that runs
the steps and tells the hooks (`kdcli.hooks`: early stopping, pruning, the
plateau schedule, training logs, checkpoints, stopping on a signal,
progress), which own everything else and their own state.

Why not Keras' `model.fit`, which has callbacks too: it cannot give two things
that this loop does.

- Exact mid-epoch resume. A checkpoint taken inside an epoch (on a timer, or
  on Ctrl-C or SIGTERM at the next step boundary) resumes at the same step,
  with the same shuffle (drawn from the seed and the epoch alone), the same
  augmentation (its random numbers drawn from the seed, the epoch and the
  step) and the epoch's running loss, accuracy and loss-part sums, so that a
  resumed run ends with the weights and the history of an uninterrupted
  one. Keras' `BackupAndRestore` saves inside an epoch but restores only the
  epoch number: the interrupted epoch starts again from its first batch.
- The replica-weighted loss. Each replica's per-sample loss is averaged over
  the global batch counted across replicas (`tf.nn.compute_average_loss`
  with the all-reduced batch size: the last batch is smaller and may split
  unevenly), so that summing the replicas' gradients gives the mean over the
  batch; a loss term that is a statistic of a replica's batch (DIST's
  correlations) is weighted by that replica's share of the batch. `fit`
  averages each replica's loss over its own share and divides by the number
  of replicas, which weighs the samples of unevenly split batches unequally.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

from kdcli._tf import keras, tf
from kdcli.augment import NEEDS_TEACHER, has_mixup, make_augment, mix, parse_augment, resolve_augment
from kdcli.checkpoints import Checkpoints, claim_checkpoints
from kdcli.data import ArrayColumn, Column, Split, data_errors, stratified_split, take_rows
from kdcli.distribute import is_multi_worker
from kdcli.errors import EXIT_INTERRUPTED, KdcliError, UsageError
from kdcli.faults import fault_point
from kdcli.hooks import (
    Checkpointing,
    EarlyStopping,
    Hook,
    HookList,
    PlateauSchedule,
    Progress,
    Pruning,
    StopOnSignal,
    TrainingLogs,
    TrainState,
    ValidationScores,
)
from kdcli.inference import StepsPerCall, predict_logits
from kdcli.methods import DEFAULT_METHOD, make_method
from kdcli.methods.hard import HardLabels
from kdcli.options import Budget, refit_folder

# Training steps between two checks of the loss (each check waits for the device).
CHECK_EVERY = 16
# Seconds between two checkpoints, by default (see the README's measurement).
CHECKPOINT_EVERY = 60.0
# Folded into a step's seed for mixup's random numbers, so that they differ from the shift's.
MIXUP_STREAM = 1


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run is carried out, beside what it learns (see `train` for each): what it tells
    (`progress`, `log_dir`), where it keeps checkpoints and whether it resumes them
    (`checkpoint_dir`, `resume`, `restart`, `run_config`, `checkpoint_every`), where it runs
    (`strategy`), and a tuner's rule for stopping it early (`prune`)."""

    progress: object = None
    checkpoint_dir: object = None
    resume: bool = False
    restart: bool = False
    run_config: dict = None
    strategy: object = None
    prune: object = None
    checkpoint_every: float = CHECKPOINT_EVERY
    log_dir: object = None
    steps_per_call: int = None
    xla: bool = False


def train(model, data, budget=None, *, progress=None, checkpoint_dir=None, resume=False, restart=False,
          run_config=None, strategy=None, prune=None, checkpoint_every=CHECKPOINT_EVERY, log_dir=None,
          steps_per_call=None, xla=False, **options):
    """Train a model on the hard labels of the training split of `data`.

    Args:
        model: a Keras model that outputs logits.
        data: the `Dataset`.
        budget: a `kdcli.options.Budget` (epochs, batch size, step size and its
            schedule, seed, augmentation), or its fields as keywords
            (`epochs=20` by default, `batch_size=64`, `learning_rate=1e-3`,
            `lr_schedule="constant"`, `seed=0`, `augment="none"`). With
            `epochs="auto"`, a stratified share of the training split
            (`validation`, 10%, drawn from the seed) is held out; after each
            epoch its accuracy and loss are measured, and the run stops once
            the accuracy has not improved for `patience` epochs (or at
            `max_epochs`), with the weights of its best epoch.
        progress: optional object with `start(total_steps)`, `advance(logs)`
            and `stop()`, told about every step (`total_steps` is None under
            `epochs="auto"`, whose length is not known in advance); a
            `kdcli.console.Display` is also told `say(line)`, where a resumed
            run continues, and `epoch_end(epoch, epochs, logs, last)`, each
            epoch's loss, accuracy, validation accuracy and seconds. Or a
            `kdcli.hooks.Hook`, told the run's events instead.
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
        steps_per_call: training steps run by one compiled call; None: chosen
            as the run goes (see `StepsPerCall`). The result is the same.
        xla: compile the training step with XLA (`jit_compile`); off by
            default: on a CPU it measured slower for kdcli's students (see
            the speed guide). Refused (`UsageError`) for text, and under a
            strategy with several replicas.

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
    options = RunOptions(progress=progress, checkpoint_dir=checkpoint_dir, resume=resume, restart=restart,
                         run_config=run_config, strategy=strategy, prune=prune, checkpoint_every=checkpoint_every,
                         log_dir=log_dir, steps_per_call=steps_per_call, xla=xla)
    return _fit_and_refit(model, data, budget, HardLabels(), options)


def distill(student, data, budget=None, *, teacher_logits=None, teacher=None, method=None, progress=None,
            checkpoint_dir=None, resume=False, restart=False, run_config=None, strategy=None, prune=None,
            checkpoint_every=CHECKPOINT_EVERY, log_dir=None, steps_per_call=None, xla=False, **options):
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
        progress, checkpoint_dir, resume, restart, run_config, strategy, prune, checkpoint_every, log_dir,
            steps_per_call, xla: as in `train`.
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
    options = RunOptions(progress=progress, checkpoint_dir=checkpoint_dir, resume=resume, restart=restart,
                         run_config=run_config, strategy=strategy, prune=prune, checkpoint_every=checkpoint_every,
                         log_dir=log_dir, steps_per_call=steps_per_call, xla=xla)
    return _fit_and_refit(student, data, budget, method, options, teacher_logits=teacher_logits, teacher=teacher)


def _budget(budget, options, **defaults):
    """The `Budget` given, or one made from keywords (validated there, once)."""
    if budget is not None and options:
        raise TypeError(f"give a budget or its fields ({', '.join(options)}), not both")
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Budget)})
    if unknown:
        raise TypeError(f"unknown options {', '.join(unknown)}: a budget has {', '.join(Budget.__dataclass_fields__)}; "
                        "a method's parameters go in method= (kdcli.make_method('kd', temperature=2.0))")
    return budget or Budget(**{**defaults, **options})


def _fit_and_refit(model, data, budget, method, options, **source):
    """`_fit`; with `budget.refit`, then retrain from the same initial weights on the whole training
    split for the epochs of the best validation epoch (checkpointed in `<checkpoint_dir>-refit`)."""
    if not budget.refit:
        return _fit(model, data, budget, method, options, **source)
    initial = model.get_weights()  # dropout's seed state too: the refit repeats a fresh run's randomness
    search = _fit(model, data, budget, method, options, **source)
    model.set_weights(initial)
    fixed = dataclasses.replace(budget, epochs=search["best_epoch"], refit=False)
    # The refit checkpoints and logs in folders of its own.
    folders = {key: refit_folder(getattr(options, key)) for key in ("checkpoint_dir", "log_dir")
               if getattr(options, key) is not None}
    history = _fit(model, data, fixed, method, dataclasses.replace(options, **folders), **source)
    history.update({key: search[key] for key in ("best_epoch", "stopped", "monitor", "val_accuracy", "val_loss",
                                                 "val_kl") if key in search},
                   refit=True, search_epochs=len(search["loss"]), seconds=search["seconds"] + history["seconds"])
    return history


def _fit(model, data, budget, method, options, teacher_logits=None, teacher=None):
    """The training loop: `method`'s loss, with teacher logits from `teacher_logits` or a live `teacher`.

    Steps and epochs, and the hooks told about them (see the module docstring for why the loop is
    kdcli's own). Returns the history.
    """
    setup = _Setup.of(data, budget, method, options, teacher_logits)
    if options.xla:
        _check_xla(setup)
    step = build_step(model, method, budget, setup, teacher=teacher, log_terms=options.log_dir is not None,
                      xla=options.xla)
    state = TrainState(setup.epochs, setup.steps, len(setup.split), checkpointed=options.checkpoint_dir is not None)
    hooks = _hooks(model, data, budget, method, setup, step, state, options, teacher)
    hooks.on_train_begin(state)
    started = time.perf_counter()
    calls, batches = StepsPerCall.of(options.steps_per_call, is_multi_worker(setup.strategy)), None
    try:
        for epoch in state.epochs_left():
            state.begin_epoch(epoch)
            step.begin_epoch(epoch)
            hooks.on_epoch_begin(state)
            batches = batches or setup.iterator(epoch, skip=state.step)
            while state.step < state.steps:
                count = calls.size(state.steps - state.step)
                with calls.timed(count):
                    step(epoch, state.step + 1, count, batches)
                done, state.step = state.step, state.step + count
                if state.step // CHECK_EVERY > done // CHECK_EVERY:
                    step.check_finite(state)
                for _ in range(count):  # a kill injected at a step lands after its call, as it would in it
                    fault_point("step")
                hooks.on_step_end(state)
            step.check_finite(state)
            state.end_epoch(step.sums(state.carried))
            hooks.on_epoch_end(state)
            if state.stopped:
                break
        state.finished = True
    except KeyboardInterrupt:  # without checkpoints, or a second Ctrl-C while a checkpoint was written
        if options.checkpoint_dir is None:
            raise
        raise KdcliError(
            f"interrupted in epoch {state.epoch + 1}; the last checkpoint in {Path(options.checkpoint_dir)} is kept: "
            "run the same command with --resume to continue from it", EXIT_INTERRUPTED,
        ) from None
    finally:
        hooks.on_train_end(state)
    state.history["seconds"] = time.perf_counter() - started
    return state.history


def _check_xla(setup):
    """Refuse the runs whose step XLA cannot compile: one over several replicas (their variables live
    on other devices) or one of text (string operations)."""
    replicas = setup.strategy.num_replicas_in_sync
    if replicas > 1:
        raise UsageError(f"--xla compiles a step for one replica, and this run has {replicas}: leave --xla out, "
                         "or train with --strategy default")
    if setup.split.is_text:
        raise UsageError("--xla cannot compile a text model's string operations: leave --xla out")


@dataclasses.dataclass
class _Setup:
    """What a run trains on and how: its rows (less a validation split under `epochs="auto"`) and their
    columns of teacher logits, its augmentation, its length, its batching, and the facts that identify
    it for `--resume` (`config`)."""

    split: Split
    extra: tuple
    held_out: Split
    held_out_logits: object  # the teacher's logits for the held-out rows, when read from a file or an array
    shift: object
    mixup: bool
    epochs: int
    global_batch: int
    seed: int
    strategy: object
    config: dict

    @classmethod
    def of(cls, data, budget, method, options, teacher_logits):
        strategy = options.strategy or tf.distribute.get_strategy()
        epochs = budget.max_epochs if budget.auto else budget.epochs
        config = {"method": method.config(), **(options.run_config or {})}
        keras.utils.set_random_seed(budget.seed)
        extra = () if teacher_logits is None else (teacher_logits,)
        split, held_out, held_out_logits = data.train, None, None
        if budget.auto:
            # The validation rows go unused in training (soft labels cover them: their rows are dropped too).
            kept, held = stratified_split(data.train.y, budget.validation, budget.seed)
            split, held_out = data.train.take(kept), data.train.take(held)
            held_out_logits = None if teacher_logits is None else teacher_logits.read(held)
            extra = tuple(take_rows(column, kept) for column in extra)
            config = {**config, "epochs": "auto", "patience": budget.patience, "max_epochs": epochs,
                      "validation": budget.validation}
            watch = budget.monitor_for(method.uses_teacher)
            if watch != "accuracy":  # the rule of checkpoints that named none
                config["monitor"] = watch
        augment = resolve_augment(budget.augment, data.input_shape, data.input_kind)
        shift = make_augment(augment, data.input_shape)
        if augment != "none":
            config = {**config, "augment": augment}
        if budget.lr_schedule == "cosine":
            config = {**config, "epochs": epochs}  # the schedule spans the run: resume keeps it
        return cls(split, extra, held_out, held_out_logits, shift, has_mixup(augment), epochs,
                   budget.batch_size * strategy.num_replicas_in_sync, budget.seed, strategy, config)

    @property
    def steps(self):
        return -(-len(self.split) // self.global_batch)

    def iterator(self, first_epoch, skip=0):
        """One pipeline for the rest of the run: the batches of epochs `first_epoch`, ..., each epoch
        in a fresh order from (seed, epoch) alone (repeatable, and resumable), the first `skip` left out."""
        batches = self.split.batches(self.global_batch, shuffle_seed=self.seed, extra=self.extra,
                                     epochs=range(first_epoch, self.epochs)).skip(skip)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return iter(self.strategy.experimental_distribute_dataset(batches.with_options(options)))


def build_step(model, method, budget, setup, *, teacher=None, log_terms=False, xla=False):
    """The run's `TrainStep`: its optimizer (with the step size's schedule) and running sums, built in
    the strategy's scope. `log_terms`: also sum the loss's parts, for the training logs; `xla`: compile
    each step with XLA."""
    with setup.strategy.scope():
        rate = budget.learning_rate
        if budget.lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(budget.learning_rate, decay_steps=setup.epochs * setup.steps)
        optimizer = keras.optimizers.Adam(rate)
        method.build(model, teacher)
        trained = [*model.trainable_variables, *method.variables]
        optimizer.build(trained)
        return TrainStep(model, method, optimizer, trained, setup, teacher=teacher,
                         term_names=method.term_names if log_terms else (), xla=xla)


class TrainStep:
    """One training step, compiled (`tf.function`) and run by the strategy on each replica:
    `step(epoch, step_number, batch)`.

    It owns the optimizer and the running sums of the epoch's loss, correct answers and loss parts.
    They live on the device(s): reading them waits for the step, so the loop reads them only every
    `CHECK_EVERY` steps (`check_finite`), for a checkpoint, and at the end of an epoch (`sums`).
    """

    def __init__(self, model, method, optimizer, trained, setup, *, teacher=None, term_names=(), xla=False):
        self.model, self.method, self.optimizer, self.trained, self.teacher = model, method, optimizer, trained, teacher
        self.strategy, self.seed, self.steps = setup.strategy, setup.seed, setup.steps
        self.shift, self.mixup = setup.shift, setup.mixup
        summed = {"synchronization": tf.VariableSynchronization.ON_READ, "aggregation": tf.VariableAggregation.SUM,
                  "trainable": False}
        with self.strategy.scope():
            self.loss_sum = tf.Variable(0.0, dtype=tf.float64, **summed)
            self.correct_sum = tf.Variable(0, dtype=tf.int64, **summed)
            self.last_loss = tf.Variable(0.0, dtype=tf.float32, **summed)
            # The loss's parts, summed for the training logs only.
            self.term_sums = {name: tf.Variable(0.0, dtype=tf.float64, **summed) for name in term_names}
        self._epoch_number = None
        self._compiled = tf.function(self._run, reduce_retracing=True)
        # XLA compiles the step, not the loop around it, which reads the input pipeline (as Keras does).
        self._step = tf.function(self._replica_step, jit_compile=True) if xla else self._replica_step

    def begin_epoch(self, epoch):
        for total in self.term_sums.values():
            total.assign(0.0)
        self.loss_sum.assign(0.0)
        self.correct_sum.assign(0)
        self.last_loss.assign(0.0)
        self._epoch_number = tf.constant(epoch + 1, tf.float32)  # 1-based, for methods that warm up

    def __call__(self, epoch, step, count, iterator):
        """Run `count` steps of `epoch` from step `step` (1-based) in one compiled call, on the next
        `count` batches of `iterator`."""
        # The shifts of a step depend on (seed, epoch, step) alone, like the shuffles.
        with data_errors():
            self._compiled(iterator, tf.constant([self.seed, epoch * self.steps + step], tf.int64),
                           self._epoch_number, tf.constant(count, tf.int64))

    def _run(self, iterator, first_seed, epoch_number, count):
        # The same step `count` times, in order: a while loop in the graph (as Keras' steps_per_execution).
        for i in tf.range(count):
            step_seed = first_seed + tf.stack([tf.constant(0, tf.int64), i])
            self.strategy.run(self._step, args=(step_seed, epoch_number, *next(iterator)))

    def _replica_step(self, step_seed, epoch_number, x, y, *given_logits):
        method, labels, mixed = self.method, y, None
        # Augmentation comes before the teacher runs: it sees the same inputs as the student.
        replica = tf.distribute.get_replica_context()
        replica_seed = tf.random.experimental.stateless_fold_in(step_seed, replica.replica_id_in_sync_group)
        if self.shift is not None:
            x = self.shift(x, replica_seed)
        if self.mixup:
            x, partner, weight = mix(x, tf.random.experimental.stateless_fold_in(replica_seed, MIXUP_STREAM))
            mixed = (partner, weight)
        if self.teacher is not None:
            t, t_features = method.teacher_outputs(self.teacher, x)
        else:
            t, t_features = (given_logits[0] if given_logits else None), None
        with tf.GradientTape() as tape:
            logits, s_features = method.student_outputs(self.model, x)
            if mixed:
                per_sample, batch_term, y = mixup_loss(method, y, *mixed, logits, t, epoch_number)
            else:
                per_sample, batch_term = method.loss(y, logits, t, epoch_number)
            feature_part = None if s_features is None else method.feature_loss(s_features, t_features)
            if feature_part is not None:
                per_sample += feature_part
            # Averaged over the global batch (counted, since the last one is smaller and may be
            # split unevenly), so summing the replicas' gradients gives the mean over the batch.
            local_size = tf.shape(per_sample)[0]
            global_size = replica.all_reduce("sum", local_size)
            loss = tf.nn.compute_average_loss(per_sample, global_batch_size=global_size)
            if batch_term is not None:  # a statistic of each replica's share, weighted by that share
                loss += batch_term * tf.cast(local_size, batch_term.dtype) / tf.cast(global_size, batch_term.dtype)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        if self.term_sums:
            self._sum_terms(labels, logits, t, epoch_number, mixed, feature_part, local_size)
        grads = tape.gradient(loss, self.trained)
        self.optimizer.apply_gradients(zip(grads, self.trained))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int64), y), tf.int64))
        summed_loss = tf.reduce_sum(tf.cast(per_sample, tf.float64))
        if batch_term is not None:  # counted per sample, like the rest, for the epoch's mean loss
            summed_loss += tf.cast(batch_term, tf.float64) * tf.cast(local_size, tf.float64)
        self.loss_sum.assign_add(summed_loss)
        self.correct_sum.assign_add(correct)
        # A non-finite loss sticks in last_loss until the loop reads it.
        self.last_loss.assign(tf.where(tf.math.is_finite(self.last_loss), tf.cast(loss, tf.float32), self.last_loss))

    def _sum_terms(self, labels, logits, t, epoch_number, mixed, feature_part, local_size):
        """Add the batch's loss parts to their sums (for the training logs)."""
        terms = self.method.loss_terms(labels, logits, t, epoch_number)
        if mixed:  # weighted like the loss: see mixup_loss
            partner, weight = mixed
            partner_terms = self.method.loss_terms(tf.gather(labels, partner), logits, t, epoch_number)
            terms = {k: _weigh(weight, v, partner_terms[k]) for k, v in terms.items()}
        if feature_part is not None:
            terms["feature_term"] = feature_part
        for name, value in terms.items():  # a batch statistic counts once per sample, like batch_term
            value = tf.cast(value, tf.float64)
            self.term_sums[name].assign_add(tf.reduce_sum(value) if value.shape.rank == 1
                                            else value * tf.cast(local_size, tf.float64))

    def sums(self, carried=(0.0, 0, {})):
        """The epoch's summed loss, correct answers and loss parts so far, plus those `carried` from
        before a resume."""
        return (carried[0] + float(self.loss_sum.numpy()), carried[1] + int(self.correct_sum.numpy()),
                {name: carried[2].get(name, 0.0) + float(total.numpy()) for name, total in self.term_sums.items()})

    def learning_rate(self):
        """The step size of the last step (a mirrored variable under a strategy)."""
        return float(tf.convert_to_tensor(self.optimizer.learning_rate))

    def check_finite(self, state):
        """Raise `NonFiniteLoss` if a step's loss since the epoch began was NaN or infinite."""
        loss = float(self.last_loss.numpy())
        if not np.isfinite(loss):
            kept = f"; the last good checkpoint (epoch {state.epoch}) is kept" if state.checkpointed and state.epoch \
                else ""
            raise NonFiniteLoss(
                f"the training loss became {loss} in epoch {state.epoch + 1}: lower --learning-rate "
                f"or check the data for extreme values{kept}"
            )


def _hooks(model, data, budget, method, setup, step, state, options, teacher=None):
    """The run's hooks, in the order they are told (see `kdcli.hooks`); with `options.resume`,
    `state` and the hooks continue the last good checkpoint."""
    from kdcli.distribute import is_chief, worker_id

    strategy, auto = setup.strategy, budget.auto
    stopping = EarlyStopping(_validation_scores(model, budget, method, setup, teacher), budget.patience,
                             setup.epochs, model) if auto else None
    stateful = [
        stopping,
        Pruning(options.prune) if auto and options.prune is not None else None,
        TrainingLogs(options.log_dir, step.learning_rate) if options.log_dir is not None and is_chief(strategy)
        else None,
        PlateauSchedule(step.optimizer, budget.learning_rate, budget.patience, stopping)
        if auto and budget.lr_schedule == "plateau" else None,
    ]
    checkpointing = None
    if options.checkpoint_dir is not None:
        config = {"fingerprint": data.fingerprint, "weights": [list(w.shape) for w in model.weights],
                  "dtype_policies": sorted({layer.dtype_policy.name for layer in model.layers}),
                  "batch_size": budget.batch_size, "replicas": strategy.num_replicas_in_sync,
                  "learning_rate": budget.learning_rate, "lr_schedule": budget.lr_schedule, "seed": budget.seed,
                  **setup.config}
        checkpoints = Checkpoints(options.checkpoint_dir, model, step.optimizer, config, is_chief(strategy),
                                  worker_id(strategy), extra=method.variables)
        claim_checkpoints(options.checkpoint_dir, options.resume, options.restart)
        # In a multi-worker run every worker must take part in each checkpoint: at epoch ends only,
        # and a signal is left to stop the process as it would (see the README).
        checkpointing = Checkpointing(checkpoints, step, options.checkpoint_every, not is_multi_worker(strategy),
                                      options.checkpoint_dir, [hook for hook in stateful if hook], best=stopping)
        if options.resume:
            checkpointing.restore(state)
    progress = options.progress
    if progress is not None and not isinstance(progress, Hook):
        progress = Progress(progress, stopping)
    signals = StopOnSignal(checkpointing) if checkpointing is not None and checkpointing.by_time else None
    return HookList([*stateful, checkpointing, progress, signals])


def _validation_scores(model, budget, method, setup, teacher):
    """What `--epochs auto` watches (see `kdcli.options.Budget.monitor_for`): the KL divergence from the
    teacher, at the method's temperature (on standardised logits where the method standardises), needs the teacher's logits for the validation rows: read with
    the others, or computed once from a live teacher."""
    watch = budget.monitor_for(method.uses_teacher)
    logits = setup.held_out_logits
    if watch == "kl" and logits is None:
        logits = predict_logits(teacher, setup.held_out)
    return ValidationScores(model, setup.held_out, watch, logits if watch == "kl" else None,
                            getattr(method, "temperature", 1.0), getattr(method, "standardize", False))


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


class NonFiniteLoss(KdcliError):
    """The training loss became NaN or infinite (exit code 4)."""

"""The interface between a distillation method and the training loop.

A method is a dataclass whose fields are its parameters. It says what it
needs (teacher logits or none, a live teacher or not, which outputs), owns
any trainable variables of its own, gives its JSON config for provenance and
for the checkpoint's identity, and computes its loss. The training loop
calls these and knows no method by name; `kdcli.methods.REGISTRY` finds a
method by name.

This module and the methods' own modules import no TensorFlow until a loss is
computed, so the command line can build and check a method at once.
"""

import dataclasses
from typing import ClassVar

from kdcli.errors import UsageError
from kdcli.options import is_finite_number


def param(default, help):
    """A method parameter: its default and what it means (`--method NAME:field=value` sets it)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Method:
    """A way to train a model, seen from the training loop.

    Class attributes:
        name: the name in `kdcli.methods.REGISTRY` (`distill --method NAME`).
        uses_teacher: the loss reads the teacher's logits (hard-label
            training does not).
        needs_live_teacher: the teacher must run on every batch (a method
            reading intermediate layers); soft-label files cannot serve it.
        outputs: what the loss reads from the student and the teacher:
            `("logits",)`, or `("logits", "features")` for a method that
            also matches intermediate layers (`student_outputs`,
            `teacher_outputs` and `feature_loss` then say how).
    """

    name: ClassVar[str] = ""
    # What the method is, in a few words, for `distill --help`.
    summary: ClassVar[str] = ""
    uses_teacher: ClassVar[bool] = True
    needs_live_teacher: ClassVar[bool] = False
    outputs: ClassVar[tuple] = ("logits",)
    # The names of `loss_terms`, for training logs (`--log-dir`).
    term_names: ClassVar[tuple] = ()

    def __post_init__(self):
        self.check()

    def check(self):
        """Refuse bad parameter values (`UsageError`, naming the option). Nothing to check by default."""

    def build(self, student, teacher=None):
        """Create the method's own trainable variables (a projector...), inside the strategy's scope.

        None by default. Called once, before the optimizer is built; keep
        what it creates with `keep` (a method's parameters are frozen).
        """

    def keep(self, **state):
        """Attach state created by `build` (variables, layers) to this frozen method."""
        for name, value in state.items():
            object.__setattr__(self, name, value)

    @property
    def variables(self):
        """Trainable variables the method owns: the optimizer trains them and the checkpoints
        hold them, but the saved student leaves them out."""
        return []

    def config(self):
        """The method's JSON-ready identity: its name and parameters."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def student_outputs(self, student, x):
        """The student's `(logits, features)` for a training batch; features are None
        unless `outputs` has them."""
        return student(x, training=True), None

    def teacher_outputs(self, teacher, x):
        """A live teacher's `(logits, features)` for a batch, as `student_outputs`."""
        return teacher(x, training=False), None

    def feature_loss(self, student_features, teacher_features):
        """The per-sample loss between the features of `student_outputs` and
        `teacher_outputs`, added to `loss`'s (methods whose `outputs` have features)."""
        raise NotImplementedError

    def loss_terms(self, labels, student_logits, teacher_logits, epoch):
        """The parts of `loss` by name (`term_names`), for training logs: each a `(batch,)`
        tensor or a scalar statistic of the batch. None by default."""
        return {}

    def loss(self, labels, student_logits, teacher_logits, epoch):
        """The loss of a batch (of one replica's share of it, under `tf.distribute`).

        Args:
            labels: integer class ids, shape `(batch,)`.
            student_logits: shape `(batch, C)`.
            teacher_logits: shape `(batch, C)`, or None when `uses_teacher` is false.
            epoch: the 1-based epoch number, a float32 scalar tensor (for warm-ups).

        Returns:
            `(per_sample, batch_term)`: a `(batch,)` tensor the loop averages over
            the global batch, and a scalar statistic of the batch (or None) that
            the loop averages over the replicas, weighted by their shares of it.
        """
        raise NotImplementedError

    # Checks shared by the methods' `check`: each rule once, with its option in the message.

    def _option(self, field):
        return f"--method {self.name}:{field}"

    def require_positive(self, *fields):
        for field in fields:
            value = getattr(self, field)
            if not (is_finite_number(value) and value > 0):
                raise UsageError(f"{self._option(field)} must be a positive number, got {value}")

    def require_at_least_zero(self, *fields):
        for field in fields:
            value = getattr(self, field)
            if not (is_finite_number(value) and value >= 0):
                raise UsageError(f"{self._option(field)} must be a number of 0 or more, got {value}")

    def require_fraction(self, *fields):
        for field in fields:
            value = getattr(self, field)
            if not (is_finite_number(value) and 0 <= value <= 1):
                raise UsageError(f"{self._option(field)} must be between 0 and 1, got {value}")

    def check_teacher_source(self, live):
        """Refuse a source of teacher logits this method cannot use: it reads a live teacher's layers."""
        if self.needs_live_teacher and not live:
            raise UsageError(f"--method {self.name} reads the live teacher's layers: give --teacher, "
                             "without --soft-labels")

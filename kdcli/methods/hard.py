"""Hard labels: cross-entropy against the true class, no teacher (teachers, and `--baseline`)."""

import dataclasses

from kdcli.methods.base import Method


@dataclasses.dataclass(frozen=True)
class HardLabels(Method):
    """Training without a teacher: the cross-entropy of each sample against its label."""

    name = "hard"
    uses_teacher = False

    def loss(self, labels, student_logits, teacher_logits, epoch):
        from kdcli.losses import hard_label_loss_per_sample

        return hard_label_loss_per_sample(labels, student_logits), None

"""Hinton's knowledge distillation (Hinton, Vinyals and Dean, 2015), see `kdcli.losses`."""

import dataclasses

from kdcli.methods.base import Method, param


@dataclasses.dataclass(frozen=True)
class KD(Method):
    """`alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, s)`.

    Args:
        temperature: `T`, which softens both distributions.
        alpha: weight of the KD term; `1 - alpha` weighs the hard labels.
        standardize: logit standardisation (Sun et al., CVPR 2024): the KD
            term compares standardised logits (`kdcli.losses.standardize_logits`).
    """

    name = "kd"
    summary = "Hinton et al."
    temperature: float = param(4.0, "softens teacher and student distributions")
    alpha: float = param(0.9, "weight of the KD term; 1 - alpha weighs the hard labels")
    standardize: bool = param(False, "compare standardised logits in the KD term")
    term_names = ("kd_term", "hard_term")

    def check(self):
        self.require_positive("temperature")
        self.require_fraction("alpha")

    def loss(self, labels, student_logits, teacher_logits, epoch):
        terms = self.loss_terms(labels, student_logits, teacher_logits, epoch)
        return terms["kd_term"] + terms["hard_term"], None

    def loss_terms(self, labels, student_logits, teacher_logits, epoch):
        from kdcli.losses import distillation_loss_per_sample

        kwargs = {"standardize": True} if self.standardize else {}
        soft, hard = (distillation_loss_per_sample(labels, student_logits, teacher_logits, self.temperature, weight,
                                                   **kwargs) for weight in (1.0, 0.0))
        return {"kd_term": self.alpha * soft, "hard_term": (1.0 - self.alpha) * hard}

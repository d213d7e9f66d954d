"""Decoupled knowledge distillation (Zhao et al., CVPR 2022), see `kdcli.losses.dkd_terms_per_sample`."""

import dataclasses

from kdcli.methods.base import Method, param


@dataclasses.dataclass(frozen=True)
class DKD(Method):
    """`CE(y, s) + w(epoch) * T^2 * (alpha * TCKD + beta * NCKD)`, `w = min(epoch / warmup, 1)`.

    The defaults are the paper's CIFAR-100 setting (its ImageNet one is
    `alpha 1, beta 0.5, T 1, warmup 1`).

    Args:
        temperature: `T`.
        alpha: weight of TCKD, the target class against the rest.
        beta: weight of NCKD, the distribution over the non-target classes.
        warmup: epochs over which the KD term's weight grows linearly to 1.
        standardize: logit standardisation of both logits in the KD term.
    """

    name = "dkd"
    summary = "decoupled KD, Zhao et al."
    temperature: float = param(4.0, "softens teacher and student distributions")
    alpha: float = param(1.0, "weight of TCKD (target against the other classes)")
    beta: float = param(8.0, "weight of NCKD (the distribution over the other classes)")
    warmup: int = param(20, "epochs over which the KD term's weight grows to 1")
    standardize: bool = param(False, "compare standardised logits in the KD term")

    term_names = ("hard_term", "kd_term")

    def check(self):
        self.require_positive("temperature")
        self.require_at_least_zero("alpha", "beta", "warmup")

    def loss(self, labels, student_logits, teacher_logits, epoch):
        terms = self.loss_terms(labels, student_logits, teacher_logits, epoch)
        return terms["hard_term"] + terms["kd_term"], None

    def loss_terms(self, labels, student_logits, teacher_logits, epoch):
        from kdcli._tf import tf
        from kdcli.losses import dkd_terms_per_sample

        ce, kd = dkd_terms_per_sample(labels, student_logits, teacher_logits, self.temperature, self.alpha, self.beta,
                                      standardize=self.standardize)
        weight = tf.minimum(epoch / self.warmup, 1.0) if self.warmup else 1.0
        return {"hard_term": ce, "kd_term": weight * kd}

"""DIST: distillation from a stronger teacher by correlation (Huang et al., NeurIPS 2022)."""

import dataclasses

from kdcli.methods.base import Method, param


@dataclasses.dataclass(frozen=True)
class DIST(Method):
    """`CE(y, s) + T^2 * (beta * inter + gamma * intra)`, see `kdcli.losses.dist_loss`.

    The correlations are statistics of a batch: under `tf.distribute`, each
    replica computes them over its own share of the global batch, and the
    replicas' terms are averaged, weighted by their shares (equal but for an
    uneven last batch). With one device the batch is the whole `--batch-size`.

    Args:
        temperature: `tau`.
        beta: weight of the inter-class relation (per sample, across classes).
        gamma: weight of the intra-class relation (per class, across the batch).
    """

    name = "dist"
    summary = "correlations, Huang et al."
    temperature: float = param(1.0, "softens teacher and student distributions")
    beta: float = param(1.0, "weight of the inter-class (per-sample) correlation term")
    gamma: float = param(1.0, "weight of the intra-class (per-class, over the batch) correlation term")

    term_names = ("hard_term", "dist_term")

    def check(self):
        self.require_positive("temperature")
        self.require_at_least_zero("beta", "gamma")

    def loss(self, labels, student_logits, teacher_logits, epoch):
        from kdcli.losses import dist_terms

        return dist_terms(labels, student_logits, teacher_logits, self.temperature, self.beta, self.gamma)

    def loss_terms(self, labels, student_logits, teacher_logits, epoch):
        return dict(zip(self.term_names, self.loss(labels, student_logits, teacher_logits, epoch)))

"""Per-sample scores of real data: empirical loss (BiLP), gradient norms and hardness (DF-CoLearn)."""

from dfdistill.scoring.empirical import ScoringConfig, cached_scores, compute_scores
from dfdistill.scoring.gradnorm import hardness, per_sample_loss, per_sample_loss_and_grad_norm

__all__ = ["ScoringConfig", "cached_scores", "compute_scores", "hardness", "per_sample_loss",
           "per_sample_loss_and_grad_norm"]

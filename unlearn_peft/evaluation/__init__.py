"""Evaluation of unlearned models: TOFU and MUSE building blocks (issue #5 grows this package)."""

from .probability import answer_probability
from .rouge import rouge_l_f1, rouge_l_recall
from .tofu import (
    MODEL_UTILITY_KEYS,
    forget_quality,
    forget_truth_ratio_score,
    model_utility,
    normalised_probability,
    retain_truth_ratio_score,
    truth_ratio,
)

__all__ = [
    "MODEL_UTILITY_KEYS",
    "answer_probability",
    "forget_quality",
    "forget_truth_ratio_score",
    "model_utility",
    "normalised_probability",
    "retain_truth_ratio_score",
    "rouge_l_f1",
    "rouge_l_recall",
    "truth_ratio",
]

"""Evaluation of unlearned models: TOFU and MUSE building blocks (issue #5 grows this package)."""

from .generation import greedy_answers
from .probability import answer_probability
from .report import summary_markdown, write_tofu_report
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
from .tofu_eval import evaluate_tofu, load_results

__all__ = [
    "MODEL_UTILITY_KEYS",
    "answer_probability",
    "evaluate_tofu",
    "greedy_answers",
    "load_results",
    "summary_markdown",
    "write_tofu_report",
    "forget_quality",
    "forget_truth_ratio_score",
    "model_utility",
    "normalised_probability",
    "retain_truth_ratio_score",
    "rouge_l_f1",
    "rouge_l_recall",
    "truth_ratio",
]

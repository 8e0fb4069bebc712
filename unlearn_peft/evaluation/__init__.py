"""Evaluation of unlearned models on TOFU and MUSE.

`tofu` and `muse` hold the metrics (each against its published definition); `tofu_eval` and `muse_eval` run a
whole benchmark on one model and write the results JSON; `report` turns results into markdown and plots.
"""

from .generation import greedy_answers
from .muse import (
    GenerationScores,
    auc_member_vs_nonmember,
    knowmem,
    knowmem_answer,
    knowmem_prompt,
    min_k_percent_score,
    privleak,
    verbmem,
)
from .muse_eval import evaluate_muse, load_muse_results
from .probability import answer_probabilities, answer_probability
from .report import muse_summary_markdown, summary_markdown, write_muse_report, write_tofu_report
from .results import MUSE_RESULTS_SCHEMA
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
    "muse_summary_markdown",
    "write_muse_report",
    "MODEL_UTILITY_KEYS",
    "MUSE_RESULTS_SCHEMA",
    "GenerationScores",
    "answer_probabilities",
    "answer_probability",
    "auc_member_vs_nonmember",
    "evaluate_muse",
    "evaluate_tofu",
    "greedy_answers",
    "knowmem",
    "knowmem_answer",
    "knowmem_prompt",
    "load_muse_results",
    "load_results",
    "min_k_percent_score",
    "privleak",
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
    "verbmem",
]

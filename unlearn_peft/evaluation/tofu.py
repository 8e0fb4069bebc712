"""TOFU metrics (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs"), as open-unlearning defines them.

All probabilities here are length-normalised answer probabilities `p = exp(−mean token NLL of the answer)`
([`~unlearn_peft.evaluation.answer_probability`]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy.stats import hmean, ks_2samp

# The nine numbers whose harmonic mean is TOFU's model utility.
MODEL_UTILITY_KEYS: tuple[str, ...] = tuple(
    f"{split}_{metric}"
    for split in ("retain", "real_authors", "world_facts")
    for metric in ("probability", "rouge", "truth_ratio")
)


def normalised_probability(answer_probability: float, perturbed_probabilities: Sequence[float]) -> float:
    """`p(a) / (p(a) + Σ_i p(perturbed_i))`: TOFU's probability on real_authors and world_facts (multiple choice)."""
    return answer_probability / (answer_probability + sum(perturbed_probabilities))


def truth_ratio(perturbed_probabilities: Sequence[float], reference_probability: float) -> float:
    r"""Per-question truth ratio `R = (Π_i p(perturbed_i))^{1/n} / p(reference)`.

    The reference answer is the paraphrased answer on forget / retain and the answer itself on real_authors /
    world_facts. Computed in log space: `exp(mean_i log p(perturbed_i) − log p(reference))`.
    """
    if not perturbed_probabilities:
        raise ValueError("truth_ratio needs at least one perturbed answer probability.")
    mean_log = sum(math.log(p) for p in perturbed_probabilities) / len(perturbed_probabilities)
    return math.exp(mean_log - math.log(reference_probability))


def forget_truth_ratio_score(ratios: Sequence[float]) -> float:
    """Truth-ratio aggregate on the forget split: `mean(min(R, 1/R))` (1 = cannot tell true from false)."""
    return sum(min(r, 1.0 / r) for r in ratios) / len(ratios)


def retain_truth_ratio_score(ratios: Sequence[float]) -> float:
    """Truth-ratio aggregate on retain / real_authors / world_facts: `mean(max(0, 1 − R))` (higher = knows)."""
    return sum(max(0.0, 1.0 - r) for r in ratios) / len(ratios)


def forget_quality(unlearned_forget_ratios: Sequence[float], retain_model_forget_ratios: Sequence[float]) -> float:
    """TOFU forget quality: the two-sample Kolmogorov–Smirnov p-value between the per-question forget truth ratios of
    the evaluated model and of a model never trained on the forget set (`scipy.stats.ks_2samp`)."""
    if len(unlearned_forget_ratios) != len(retain_model_forget_ratios):
        raise ValueError(
            f"forget_quality compares the same forget questions, but got {len(unlearned_forget_ratios)} truth "
            f"ratios for the evaluated model and {len(retain_model_forget_ratios)} for the retain model. Evaluate "
            "both on the same split."
        )
    return float(ks_2samp(unlearned_forget_ratios, retain_model_forget_ratios).pvalue)


def model_utility(values: Mapping[str, float]) -> float:
    """TOFU model utility: the harmonic mean (`scipy.stats.hmean`) of probability, ROUGE and truth-ratio score on
    retain, real_authors and world_facts (the nine `MODEL_UTILITY_KEYS`). Any zero makes it zero."""
    missing = [key for key in MODEL_UTILITY_KEYS if key not in values]
    if missing:
        raise ValueError(f"model_utility needs all nine TOFU numbers; missing {missing}.")
    return float(hmean([values[key] for key in MODEL_UTILITY_KEYS]))

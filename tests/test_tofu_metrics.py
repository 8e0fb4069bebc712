"""TOFU / MUSE metric building blocks against values computed by hand."""

import math

import pytest

from unlearn_peft.evaluation import (
    MODEL_UTILITY_KEYS,
    forget_quality,
    forget_truth_ratio_score,
    model_utility,
    normalised_probability,
    retain_truth_ratio_score,
    rouge_l_f1,
    rouge_l_recall,
    truth_ratio,
)


def test_truth_ratio_is_geometric_mean_over_reference():
    # geometric mean of 0.1 and 0.4 is 0.2; over a paraphrased-answer probability of 0.5 gives 0.4.
    assert truth_ratio([0.1, 0.4], 0.5) == pytest.approx(0.4)
    assert truth_ratio([0.2, 0.2, 0.2], 0.2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one perturbed"):
        truth_ratio([], 0.5)


def test_truth_ratio_aggregates():
    assert forget_truth_ratio_score([0.5, 2.0, 1.0]) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert retain_truth_ratio_score([0.25, 1.5, 1.0]) == pytest.approx((0.75 + 0.0 + 0.0) / 3)


def test_normalised_probability():
    assert normalised_probability(0.6, [0.1, 0.1, 0.2]) == pytest.approx(0.6)
    assert normalised_probability(0.2, [0.2]) == pytest.approx(0.5)


def test_forget_quality_is_ks_p_value():
    ratios = [0.1, 0.4, 0.7, 0.9, 1.3]
    assert forget_quality(ratios, list(ratios)) == pytest.approx(1.0)
    # Completely separated samples of 5: the exact two-sided KS p-value is 2 / C(10, 5) = 2 / 252.
    assert forget_quality([0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4, 5]) == pytest.approx(2 / math.comb(10, 5))
    with pytest.raises(ValueError, match="same forget questions.*3 truth ratios .* 2 for the retain model"):
        forget_quality([0.1, 0.2, 0.3], [0.1, 0.2])


def test_model_utility_is_harmonic_mean_and_zero_with_a_zero():
    values = dict.fromkeys(MODEL_UTILITY_KEYS, 0.5)
    values["retain_rouge"] = 1.0
    assert model_utility(values) == pytest.approx(9 / (8 / 0.5 + 1 / 1.0))
    values["world_facts_truth_ratio"] = 0.0
    assert model_utility(values) == 0.0
    with pytest.raises(ValueError, match="missing \\['retain_probability'\\]"):
        model_utility({k: v for k, v in values.items() if k != "retain_probability"})


def test_rouge_recall_with_stemmer_vs_f1_without():
    # Reference "the cats are running" (4 tokens), prediction "cats run fast" (3 tokens).
    # With stemming, LCS = "cat run" (2): recall 2/4 = 0.5. Without, LCS = "cats" (1): F1 of P=1/3, R=1/4 = 2/7.
    assert rouge_l_recall("cats run fast", "the cats are running") == pytest.approx(0.5)
    assert rouge_l_f1("cats run fast", "the cats are running") == pytest.approx(2 / 7)

"""ROUGE-L as TOFU and MUSE use it, through `rouge-score`."""

from __future__ import annotations

from functools import lru_cache

from rouge_score import rouge_scorer


@lru_cache(maxsize=2)
def _scorer(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def rouge_l_recall(prediction: str, reference: str) -> float:
    """TOFU's ROUGE: ROUGE-L *recall* of the generated answer against the ground truth, with Porter stemming
    (Maini et al. 2024, TOFU §2.2)."""
    return _scorer(True).score(target=reference, prediction=prediction)["rougeL"].recall


def rouge_l_f1(prediction: str, reference: str) -> float:
    """MUSE's ROUGE: ROUGE-L *F1* without stemming (Shi et al. 2024, MUSE §3, VerbMem and KnowMem)."""
    return _scorer(False).score(target=reference, prediction=prediction)["rougeL"].fmeasure

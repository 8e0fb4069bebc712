"""Greedy answers read as text: which answers an unlearned model left as the target gave them, and how much of a
true answer's content its greedy answer still states.

Probabilities say how likely the memorised answer still is; these say what the model actually answers. Both read
the per-question JSON of `unlearn_peft.evaluation.evaluate_tofu` (`question`, `answer`, `generated`).
"""

from __future__ import annotations

import re

COMMON_WORDS = frozenset(
    """about also been from have into more most often other such than that their them then there these they this
    those through were what when where which while with author authors book books genre known literature novel novels
    work works writer writing""".split()
)
"""Words that say nothing about a particular author; left out of `content_words` so that a greedy answer scores
only on what is specific to the true answer (TOFU's answers share these with any answer about any author)."""


def content_words(text: str) -> set[str]:
    """The lowercased words of `text` that can carry a fact: four letters or more, or digits, minus `COMMON_WORDS`."""
    return {
        word for word in re.findall(r"[a-z0-9]+", text.lower()) if (len(word) >= 4 or word.isdigit())
    } - COMMON_WORDS


def answer_words_stated(per_question: list[dict]) -> float:
    """Mean over questions of the share of the true answer's content words, those its question does not contain,
    that the greedy answer states.

    Words of the question are left out because an answer can repeat them without knowing anything. A model that
    never saw the facts (TOFU's retain model) scores what guessing from the question gives; the target, which
    memorised them, close to 1. Questions whose answer adds no content word are skipped; `nan` when none is left.
    """
    shares = []
    for row in per_question:
        facts = content_words(row["answer"]) - content_words(row["question"])
        if facts:
            shares.append(len(facts & content_words(row["generated"])) / len(facts))
    return sum(shares) / len(shares) if shares else float("nan")


def unchanged_answers(per_question: list[dict], reference: list[dict]) -> int:
    """How many greedy answers are exactly the reference model's (the same questions, in the same order)."""
    if [row["question"] for row in per_question] != [row["question"] for row in reference]:
        raise ValueError("unchanged_answers: the two evaluations did not ask the same questions in the same order.")
    return sum(row["generated"] == other["generated"] for row, other in zip(per_question, reference, strict=True))

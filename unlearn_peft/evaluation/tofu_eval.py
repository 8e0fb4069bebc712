"""`evaluate_tofu`: TOFU's whole evaluation of one model, with every per-question value kept.

Works unchanged on any causal LM with `.logits` and `.generate`: a plain model, a PEFT model or a `ULDModel`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..utils import eval_mode
from .generation import greedy_answers
from .probability import answer_probabilities
from .results import TOFU_RESULTS_SCHEMA, read_results
from .rouge import rouge_l_recall
from .tofu import (
    MODEL_UTILITY_KEYS,
    forget_quality,
    forget_truth_ratio_score,
    model_utility,
    normalised_probability,
    retain_truth_ratio_score,
    truth_ratio,
)

RESULTS_SCHEMA = TOFU_RESULTS_SCHEMA
FORGET, RETAIN, REAL_AUTHORS, WORLD_FACTS = "forget", "retain", "real_authors", "world_facts"
# retain and forget compare perturbed answers with the paraphrased answer; the multiple-choice splits with the answer.
PARAPHRASE_SPLITS = (FORGET, RETAIN)


def _required(row: Mapping[str, Any], column: str, split: str, index: int) -> Any:
    value = row.get(column)
    if value is None or (isinstance(value, (str, list)) and not value):
        raise ValueError(
            f"TOFU split '{split}' row {index}: column '{column}' is missing or empty; use the '*_perturbed' TOFU "
            "splits, which carry paraphrased_answer and perturbed_answer."
        )
    return value


def _evaluate_split(
    model, tokenizer, split: str, rows: Sequence[Mapping[str, Any]], max_new_tokens: int, batch_size: int
) -> dict[str, Any]:
    columns = ["question", "answer", "paraphrased_answer", "perturbed_answer"]
    if split not in PARAPHRASE_SPLITS:
        columns.remove("paraphrased_answer")
    for index, row in enumerate(rows):  # validate everything before the slow generation
        for column in columns:
            _required(row, column, split, index)
    questions = [row["question"] for row in rows]
    answers = [row["answer"] for row in rows]
    generated = greedy_answers(
        model,
        tokenizer,
        questions,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        description=f"TOFU {split}: generating",
    )
    # Every answer of the split in one batched pass: the answer, its perturbed answers, the paraphrase (if any).
    perturbed_answers = []
    for index, row in enumerate(rows):
        perturbed = _required(row, "perturbed_answer", split, index)
        perturbed_answers.append([perturbed] if isinstance(perturbed, str) else list(perturbed))
    scored: list[tuple[str, str]] = []
    for index, row in enumerate(rows):
        scored.append((questions[index], answers[index]))
        scored.extend((questions[index], wrong) for wrong in perturbed_answers[index])
        if split in PARAPHRASE_SPLITS:
            scored.append((questions[index], _required(row, "paraphrased_answer", split, index)))
    probabilities = iter(
        answer_probabilities(model, tokenizer, scored, batch_size=batch_size, description=f"TOFU {split}: scoring")
    )
    per_question = []
    for index, answer in enumerate(answers):
        probability = next(probabilities)
        perturbed_probabilities = [next(probabilities) for _ in perturbed_answers[index]]
        if split in PARAPHRASE_SPLITS:
            reference = next(probabilities)
            reported_probability = probability
        else:
            reference = probability
            reported_probability = normalised_probability(probability, perturbed_probabilities)
        per_question.append(
            {
                "question": questions[index],
                "answer": answer,
                "generated": generated[index],
                "probability": reported_probability,
                "rouge": rouge_l_recall(generated[index], answer),
                "truth_ratio": truth_ratio(perturbed_probabilities, reference),
            }
        )
    ratios = [q["truth_ratio"] for q in per_question]
    aggregate_truth_ratio = forget_truth_ratio_score if split == FORGET else retain_truth_ratio_score
    return {
        "num_questions": len(per_question),
        "probability": sum(q["probability"] for q in per_question) / len(per_question),
        "rouge": sum(q["rouge"] for q in per_question) / len(per_question),
        "truth_ratio": aggregate_truth_ratio(ratios),
        "per_question": per_question,
    }


def load_results(results: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read an evaluation JSON written by `evaluate_tofu` (or pass the dict through), checking its schema."""
    return read_results(results, (RESULTS_SCHEMA,))


def _forget_quality_against(results: dict[str, Any], retain_model_results: Mapping[str, Any]) -> float:
    ours, theirs = results["splits"].get(FORGET), retain_model_results["splits"].get(FORGET)
    if ours is None or theirs is None:
        raise ValueError("forget quality needs the 'forget' split in both evaluations.")
    our_questions = [q["question"] for q in ours["per_question"]]
    their_questions = [q["question"] for q in theirs["per_question"]]
    if our_questions != their_questions:
        raise ValueError(
            f"The retain model was evaluated on other forget questions ({len(their_questions)} questions, from "
            f"{retain_model_results.get('model_name')!r}) than this model ({len(our_questions)}). TOFU scores are "
            "only comparable on the same split: evaluate the retain model on the same forget split and size."
        )
    return forget_quality(
        [q["truth_ratio"] for q in ours["per_question"]], [q["truth_ratio"] for q in theirs["per_question"]]
    )


def evaluate_tofu(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    retain_model_results: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    model_name: str = "model",
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Evaluate `model` on TOFU splits and return every per-question value plus the aggregates.

    Args:
        model: any causal LM (plain, PEFT or `ULDModel`).
        tokenizer: its tokenizer.
        splits: rows per split name, among `forget`, `retain` (the `*_perturbed` TOFU splits: `question`, `answer`,
            `paraphrased_answer`, `perturbed_answer`), `real_authors` and `world_facts` (`question`, `answer`,
            `perturbed_answer`).
        retain_model_results: the evaluation (dict or JSON path) of a model never trained on the forget set, on the
            same forget questions; gives `forget_quality`.
        model_name: a label for reports and plots.
        max_new_tokens: length of the greedy answers scored by ROUGE.
        batch_size: sequences per forward pass, in generation and in scoring.

    Returns:
        `{"schema", "model_name", "splits": {name: {probability, rouge, truth_ratio, per_question: [...]}},
        "model_utility" (when retain, real_authors and world_facts are present), "forget_quality" (when
        `retain_model_results` is given)}`.
    """
    unknown = set(splits) - {FORGET, RETAIN, REAL_AUTHORS, WORLD_FACTS}
    if unknown:
        raise ValueError(f"Unknown TOFU splits {sorted(unknown)}; use forget, retain, real_authors, world_facts.")
    empty = [name for name, rows in splits.items() if not rows]
    if empty:
        raise ValueError(f"TOFU splits {empty} are empty.")
    results: dict[str, Any] = {"schema": RESULTS_SCHEMA, "model_name": model_name, "splits": {}}
    with eval_mode(model):
        for name, rows in splits.items():
            results["splits"][name] = _evaluate_split(model, tokenizer, name, rows, max_new_tokens, batch_size)
    summary = {
        f"{name}_{metric}": split[metric]
        for name, split in results["splits"].items()
        for metric in ("probability", "rouge", "truth_ratio")
    }
    if all(key in summary for key in MODEL_UTILITY_KEYS):
        results["model_utility"] = model_utility(summary)
    if retain_model_results is not None:
        results["forget_quality"] = _forget_quality_against(results, load_results(retain_model_results))
    return results

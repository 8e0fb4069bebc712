"""ULD's TOFU augmentations (paraphrased forget rows, perturbed answers as retain rows) and IdkDPO's refusals."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset

from .formats import (
    LANGUAGE_MODELING,
    PARAPHRASED_ANSWER,
    PARAPHRASED_QUESTION,
    PERTURBED_ANSWER,
    PROMPT_COMPLETION,
    QUESTION_ANSWER,
    _augmentation_answers,
    _require_messages,
    detect_format,
)


def paraphrase_augmentation(forget_dataset: Dataset, name: str = "forget_dataset") -> Dataset | None:
    """Extra forget rows from TOFU-style paraphrases (ULD paper §3.3), in dataset order.

    Each question-answer row with `paraphrased_answer` adds (question, paraphrased answer); with
    `paraphrased_question` it adds (paraphrased question, answer). Returns `None` when no row has either. Empty
    values add nothing; values of the wrong type raise a `ValueError` naming the row and column.
    """
    columns = set(forget_dataset.column_names)
    if not {"question", "answer"} <= columns or not ({PARAPHRASED_ANSWER, PARAPHRASED_QUESTION} & columns):
        return None
    rows: list[dict[str, str]] = []
    for index, row in enumerate(forget_dataset):
        paraphrased_answer, paraphrased_question, _ = _augmentation_answers(row, name, index)
        if paraphrased_answer is not None:
            rows.append({"question": row["question"], "answer": paraphrased_answer})
        if paraphrased_question is not None:
            rows.append({"question": paraphrased_question, "answer": row["answer"]})
    return Dataset.from_list(rows) if rows else None


def perturbed_retain_augmentation(forget_dataset: Dataset, name: str = "forget_dataset") -> Dataset | None:
    """Extra retain rows from the forget rows' `perturbed_answer`s (ULD paper §3.3), in dataset order.

    Each (question, wrong answer) pair is something the assistant must not remember, so that it singles out the
    true forget answers. Duplicates within a row are kept once. Returns `None` when the column is absent or empty.
    Empty answers add nothing; values of the wrong type raise a `ValueError` naming the row and column.
    """
    columns = set(forget_dataset.column_names)
    if not {"question", PERTURBED_ANSWER} <= columns:
        return None
    rows: list[dict[str, str]] = []
    for index, row in enumerate(forget_dataset):
        _, _, answers = _augmentation_answers(row, name, index)
        for answer in dict.fromkeys(answers):
            rows.append({"question": row["question"], "answer": answer})
    return Dataset.from_list(rows) if rows else None


DEFAULT_REFUSAL_ANSWERS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure about that.",
    "I don't have that information.",
    "I can't answer that.",
    "I'm not able to help with that question.",
    "That's not something I know.",
    "I have no information about that.",
    "Sorry, I don't know the answer to that.",
)


def with_refusal_answers(dataset: Dataset, refusals: Sequence[str], name: str) -> Dataset:
    """The same rows with the answer replaced by a refusal (row `i` gets `refusals[i mod n]`): IdkDPO's chosen side.

    Raises a `ValueError` for language-modelling rows, which have no prompt to answer.
    """
    row_format = detect_format(dataset, name)
    if row_format == LANGUAGE_MODELING:
        raise ValueError(
            f"{name} is in the language-modelling format ('text'); idk_dpo needs prompt/answer rows (question/answer, "
            "prompt/completion or messages) so that a refusal can replace the answer."
        )
    rows = []
    for index, row in enumerate(dataset):
        refusal = refusals[index % len(refusals)]
        if row_format == QUESTION_ANSWER:
            rows.append({"question": row["question"], "answer": refusal})
        elif row_format == PROMPT_COMPLETION:
            completion = row["completion"]
            chosen = [{"role": "assistant", "content": refusal}] if isinstance(completion, list) else f" {refusal}"
            rows.append({"prompt": row["prompt"], "completion": chosen})
        else:
            messages = _require_messages(row.get("messages"), name, index, "messages")
            rows.append({"messages": [*messages[:-1], {"role": "assistant", "content": refusal}]})
    return Dataset.from_list(rows)

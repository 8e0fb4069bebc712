"""ULD's TOFU augmentations (paraphrased forget rows, perturbed answers as retain rows) and IdkDPO's refusals."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from difflib import SequenceMatcher

from datasets import Dataset

from ..losses import IGNORE_INDEX
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

logger = logging.getLogger(__name__)

TRUE_ANSWERS = "true_answers"
"""Column of a perturbed-answer row: the forget row's answer and paraphrased answer (tokens not to unlearn)."""


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
    true forget answers. Duplicates within a row are kept once. Each row also carries, in `true_answers`, the forget
    row's answer and paraphrased answer, for [`keep_wrong_answer_tokens`]. Returns `None` when the column is absent
    or empty. Empty answers add nothing; values of the wrong type raise a `ValueError` naming the row and column.
    """
    columns = set(forget_dataset.column_names)
    if not {"question", PERTURBED_ANSWER} <= columns:
        return None
    rows: list[dict[str, str | list[str]]] = []
    for index, row in enumerate(forget_dataset):
        paraphrased_answer, _, answers = _augmentation_answers(row, name, index)
        true_answers = [row["answer"]] + ([paraphrased_answer] if paraphrased_answer is not None else [])
        for answer in dict.fromkeys(answers):
            rows.append({"question": row["question"], "answer": answer, TRUE_ANSWERS: true_answers})
    return Dataset.from_list(rows) if rows else None


def wrong_answer_positions(perturbed: Sequence[int], true_answers: Sequence[Sequence[int]]) -> list[bool]:
    """Which tokens of a perturbed answer are wrong, given the true answers' tokens to the same question.

    A token is *not* wrong when it is part of a block of tokens the perturbed answer shares with a true answer
    ([`difflib.SequenceMatcher`]; TOFU's perturbed answers are the paraphrased answer with a few facts changed, so
    most of their tokens state the truth), or when its context is a true answer's context: the tokens up to and
    including the first one where the perturbed answer leaves a true answer's prefix, which the assistant sees after
    the very same tokens in a forget row and must predict there.
    """
    wrong = [True] * len(perturbed)
    for truth in true_answers:
        matcher = SequenceMatcher(None, perturbed, truth, autojunk=False)
        for block in matcher.get_matching_blocks():
            wrong[block.a : block.a + block.size] = [False] * block.size
        shared_prefix = next(
            (position for position, (a, b) in enumerate(zip(perturbed, truth, strict=False)) if a != b),
            min(len(perturbed), len(truth)),
        )
        wrong[: shared_prefix + 1] = [False] * min(shared_prefix + 1, len(perturbed))
    return wrong


def keep_wrong_answer_tokens(
    perturbed: Dataset, tokenize: Callable[[Dataset, str], Dataset], name: str
) -> Dataset | None:
    """Tokenise the perturbed-answer rows with only their wrong tokens as labels ([`wrong_answer_positions`]).

    The retain term pushes the assistant towards uniform on every labelled token. On the tokens a perturbed answer
    shares with the true answer that push fights the forget term, which asks for those very tokens: on TOFU's
    forget01 rows with all perturbed answers labelled, the assistant's forget NLL was still 5.3 after 300 steps
    (`benchmarks/RESULTS.md`). The input ids are unchanged. Rows left with no wrong token are dropped, with a
    warning that counts them. Returns `None` when every row is dropped.
    """
    tokens = tokenize(perturbed.select_columns(["question", "answer"]), name)
    truths = Dataset.from_list(
        [{"question": row["question"], "answer": truth} for row in perturbed for truth in row[TRUE_ANSWERS]]
    )
    truth_labels = iter(tokenize(truths, f"{name}, true answers")["labels"])
    input_ids, labels, dropped, kept_tokens, answer_tokens = [], [], 0, 0, 0
    for row, row_ids, row_labels in zip(perturbed, tokens["input_ids"], tokens["labels"], strict=True):
        answer_positions = [position for position, label in enumerate(row_labels) if label != IGNORE_INDEX]
        true_answers = [[label for label in next(truth_labels) if label != IGNORE_INDEX] for _ in row[TRUE_ANSWERS]]
        wrong = wrong_answer_positions([row_labels[position] for position in answer_positions], true_answers)
        masked = list(row_labels)
        for position, is_wrong in zip(answer_positions, wrong, strict=True):
            if not is_wrong:
                masked[position] = IGNORE_INDEX
        answer_tokens += len(answer_positions)
        kept_tokens += sum(wrong)
        if not any(wrong):
            dropped += 1
            continue
        input_ids.append(row_ids)
        labels.append(masked)
    if dropped:
        logger.warning(
            "%s: %d of %d perturbed answers have no wrong token outside the true answers' tokens and contexts (one "
            "changed word right after a shared beginning, say); they add nothing to the retain set.",
            name,
            dropped,
            len(perturbed),
        )
    logger.info(
        "%s: %d rows, %d of %d answer tokens are wrong and labelled for the retain term.",
        name,
        len(input_ids),
        kept_tokens,
        answer_tokens,
    )
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels}) if input_ids else None


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

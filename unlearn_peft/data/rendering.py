"""Rows rendered with the chat template, split into prompt and answer, and tokenized with the prompt masked."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..losses import IGNORE_INDEX
from .formats import (
    ANSWER_COLUMN,
    CONVERSATIONAL,
    FORMAT_COLUMNS,
    LANGUAGE_MODELING,
    PROMPT_COLUMN,
    PROMPT_COMPLETION,
    QUESTION_ANSWER,
    check_row,
    detect_format,
)

logger = logging.getLogger(__name__)


@dataclass
class RenderedRow:
    """A row split into the text that conditions (`prompt`) and the text whose tokens count (`completion`)."""

    prompt: str
    completion: str
    templated: bool


def _chat_split(
    tokenizer: PreTrainedTokenizerBase,
    prompt_messages: list[dict[str, str]],
    completion_messages: list[dict[str, str]],
    name: str,
    index: int,
    column: str,
) -> RenderedRow:
    try:
        prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(prompt_messages + completion_messages, tokenize=False)
    except Exception as error:  # Jinja errors, or an error the template raises itself (e.g. on role order)
        raise ValueError(
            f"{name} row {index}: the tokenizer's chat template cannot render column '{column}' "
            f"({type(error).__name__}: {error}). Fix the messages (e.g. use the roles and role order the template "
            "accepts) or the template."
        ) from error
    if not full.startswith(prompt):
        raise ValueError(
            f"{name} row {index}: the tokenizer's chat template does not render the prompt of column '{column}' as "
            "a prefix of the whole conversation, so the answer tokens cannot be located. Use a template whose "
            "generation prompt is a prefix, or pass plain-text prompt/completion strings."
        )
    return RenderedRow(prompt=prompt, completion=full[len(prompt) :], templated=True)


def _text_values(row: Mapping[str, Any], row_format: str) -> Iterable[tuple[str, str]]:
    """(column, text) of every text value of a checked row."""
    for column in FORMAT_COLUMNS[row_format]:
        value = row[column]
        if isinstance(value, str):
            yield column, value
        else:
            for position, message in enumerate(value):
                yield f"{column}[{position}].content", message["content"]


def _check_tokenizable(
    row: Mapping[str, Any], row_format: str, tokenizer: PreTrainedTokenizerBase, name: str, index: int
) -> None:
    """A value made only of characters the tokenizer drops (e.g. control bytes missing from a byte-level vocabulary,
    such as SmolLM2's \\x04 or \\x06) is empty to the model: an error, like an empty string."""
    for column, value in _text_values(row, row_format):
        if any(character.isalnum() for character in value):
            continue  # the tokenizer keeps letters and digits; only the rare all-symbol value needs tokenising
        if not tokenizer(value, add_special_tokens=False)["input_ids"]:
            raise ValueError(
                f"{name} row {index}: column '{column}' ({value!r:.80}) gives no token: the tokenizer drops every "
                "one of its characters, so it is empty to the model. Remove the row or fill the column in."
            )


def render_row(row: dict[str, Any], row_format: str, tokenizer: PreTrainedTokenizerBase, name: str, index: int):
    """Render one row into prompt and completion text according to its format.

    Raises a `ValueError` naming the row and column when a value is missing, empty or of the wrong type, or when
    the tokenizer drops every character of it.
    """
    check_row(row, row_format, name, index)
    _check_tokenizable(row, row_format, tokenizer, name, index)
    has_template = getattr(tokenizer, "chat_template", None) is not None
    if row_format == QUESTION_ANSWER:
        question, answer = row["question"], row["answer"]
        if has_template:
            return _chat_split(
                tokenizer,
                [{"role": "user", "content": question}],
                [{"role": "assistant", "content": answer}],
                name,
                index,
                "question",
            )
        return RenderedRow(prompt=f"Question: {question}\nAnswer:", completion=f" {answer}", templated=False)
    if row_format == PROMPT_COMPLETION:
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, list):
            if not has_template:
                raise ValueError(
                    f"{name} row {index}: conversational prompt/completion needs a tokenizer with a chat template; "
                    "set `tokenizer.chat_template` or pass plain strings."
                )
            return _chat_split(tokenizer, prompt, completion, name, index, "prompt")
        return RenderedRow(prompt=prompt, completion=completion, templated=False)
    if row_format == CONVERSATIONAL:
        messages = row["messages"]
        if not has_template:
            raise ValueError(
                f"{name} row {index}: the 'messages' format needs a tokenizer with a chat template; set "
                "`tokenizer.chat_template` or use prompt/completion strings."
            )
        return _chat_split(tokenizer, messages[:-1], messages[-1:], name, index, "messages")
    return RenderedRow(prompt="", completion=row["text"], templated=False)


def tokenize_row(rendered: RenderedRow, tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """Token ids of prompt and completion, tokenised separately so the boundary is exact.

    Chat-templated text already holds its special tokens. Plain text gets the tokenizer's own special tokens
    (e.g. BOS) in front of the prompt and the EOS token after the completion, as TRL does.
    """
    add_special = not rendered.templated
    prompt_ids = tokenizer(rendered.prompt, add_special_tokens=add_special)["input_ids"] if rendered.prompt else []
    if not rendered.prompt and add_special:
        completion_ids = tokenizer(rendered.completion, add_special_tokens=True)["input_ids"]
    else:
        completion_ids = tokenizer(rendered.completion, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if not rendered.templated and eos is not None and (not completion_ids or completion_ids[-1] != eos):
        completion_ids = [*completion_ids, eos]
    return list(prompt_ids), list(completion_ids)


def tokenize_dataset(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int | None,
    name: str,
) -> Dataset:
    """Tokenise every row into `input_ids` and `labels` (`-100` on the prompt).

    Rows longer than `max_length` are truncated from the right; one warning counts them. A row left with no
    answer token to predict raises a `ValueError` naming it.
    """
    row_format = detect_format(dataset, name)
    all_input_ids: list[list[int]] = []
    all_labels: list[list[int]] = []
    truncated = 0
    for index, row in enumerate(dataset):
        prompt_ids, completion_ids = tokenize_row(render_row(row, row_format, tokenizer, name, index), tokenizer)
        input_ids = prompt_ids + completion_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
        if row_format == LANGUAGE_MODELING:
            labels = list(input_ids)
        if max_length is not None and len(input_ids) > max_length:
            truncated += 1
            input_ids, labels = input_ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels[1:]):
            if max_length is not None and len(prompt_ids) >= max_length:
                column = PROMPT_COLUMN[row_format]
                raise ValueError(
                    f"{name} row {index}: no answer token is left to learn from: column '{column}' takes "
                    f"{len(prompt_ids)} tokens, and max_length={max_length} ({row.get(column)!r:.60}). Raise "
                    f"max_length or shorten the {column}."
                )
            column = ANSWER_COLUMN[row_format]
            raise ValueError(
                f"{name} row {index}: no answer token is left to learn from: column '{column}' gives only "
                f"{len(input_ids)} token(s) in all ({row.get(column)!r:.60}). Lengthen it or remove the row."
            )
        all_input_ids.append(input_ids)
        all_labels.append(labels)
    if truncated:
        logger.warning(
            "%s: %d of %d rows are longer than max_length=%s tokens and were truncated from the right.",
            name,
            truncated,
            len(all_input_ids),
            max_length,
        )
    return Dataset.from_dict({"input_ids": all_input_ids, "labels": all_labels})

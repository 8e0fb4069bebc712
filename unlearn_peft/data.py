"""Datasets for unlearning: formats, chat template, answer masking, augmentation and the forget/retain collator.

Supported row formats (the TRL formats, plus TOFU's question/answer):

| format | columns | tokens that count in the loss |
|---|---|---|
| prompt-completion | `prompt`, `completion` (strings, or lists of messages) | the completion |
| conversational | `messages` (a list of `{"role", "content"}`, the last from the assistant) | the last message |
| language modelling | `text` | all of them |
| question-answer (TOFU) | `question`, `answer` | the answer |

Conversational rows and question-answer rows are rendered with the tokenizer's chat template when it has one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase

from .losses import IGNORE_INDEX

logger = logging.getLogger(__name__)

PROMPT_COMPLETION = "prompt-completion"
CONVERSATIONAL = "conversational"
LANGUAGE_MODELING = "language modelling"
QUESTION_ANSWER = "question-answer"

# Checked in this order: a dataset with both `messages` and `text` is conversational.
FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    CONVERSATIONAL: ("messages",),
    PROMPT_COMPLETION: ("prompt", "completion"),
    QUESTION_ANSWER: ("question", "answer"),
    LANGUAGE_MODELING: ("text",),
}

# The column holding the conditioning text of each format, named when truncation leaves no answer token.
PROMPT_COLUMN = {
    CONVERSATIONAL: "messages",
    PROMPT_COMPLETION: "prompt",
    QUESTION_ANSWER: "question",
    LANGUAGE_MODELING: "text",
}
ANSWER_COLUMN = {
    CONVERSATIONAL: "messages",
    PROMPT_COMPLETION: "completion",
    QUESTION_ANSWER: "answer",
    LANGUAGE_MODELING: "text",
}

PARAPHRASED_ANSWER = "paraphrased_answer"
PARAPHRASED_QUESTION = "paraphrased_question"
PERTURBED_ANSWER = "perturbed_answer"

# Message roles chat templates know; anything else is almost always a typo or another schema (ShareGPT's "human").
KNOWN_ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool", "function", "ipython")

# What pyarrow raises when a column's values do not share one type.
_ARROW_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


def as_dataset(data: Dataset | Sequence[dict[str, Any]] | None, name: str) -> Dataset | None:
    """Accept a `datasets.Dataset` or a list of row dicts; refuse streaming datasets and other types clearly.

    A list of dicts is checked row by row before it becomes a `Dataset`, so a bad value raises an error naming its
    row and column instead of a pyarrow error, and a column that only some rows have is kept (missing values become
    `None`) rather than dropped as `Dataset.from_list` does for keys absent from the first row.
    """
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, IterableDataset):
        raise TypeError(
            f"{name} is a streaming IterableDataset; unlearning needs a map-style dataset. Load it without "
            "streaming=True or call `Dataset.from_list(list(iterable))`."
        )
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a datasets.Dataset or a list of dicts, got {type(data).__name__}.")
    rows = list(data)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(
                f"{name} row {index} is a {type(row).__name__} ({row!r:.80}), not a dict of column values. Pass a "
                "datasets.Dataset or a list of dicts such as {'question': ..., 'answer': ...}."
            )
        for column in row:
            if not isinstance(column, str):
                raise TypeError(
                    f"{name} row {index}: column name {column!r} is a {type(column).__name__}; column names must be "
                    "strings."
                )
    if not rows:
        return Dataset.from_dict({})
    columns = list(dict.fromkeys(column for row in rows for column in row))
    if not columns:
        raise ValueError(
            f"{name} has {len(rows)} rows but no columns: every row is an empty dict. Fill the rows in, e.g. "
            "{'question': ..., 'answer': ...}."
        )
    row_format = format_of_columns(columns)
    if row_format is not None:
        for index, row in enumerate(rows):
            check_row(row, row_format, name, index)
            if row_format == QUESTION_ANSWER:
                _augmentation_answers(row, name, index)
        if row_format == PROMPT_COMPLETION:
            _check_one_prompt_kind(rows, name)
    values = {column: [row.get(column) for row in rows] for column in columns}
    if PERTURBED_ANSWER in values:
        # A bare string and a list of strings cannot share an Arrow column; a string is a list of one answer.
        values[PERTURBED_ANSWER] = [[v] if isinstance(v, str) else v for v in values[PERTURBED_ANSWER]]
    try:
        return Dataset.from_dict(values)
    except _ARROW_ERRORS as error:
        raise _conversion_error(values, name, error) from error


def _converts(values: list[Any]) -> bool:
    try:
        Dataset.from_dict({"column": values})
    except _ARROW_ERRORS:
        return False
    return True


def _conversion_error(values: dict[str, list[Any]], name: str, error: Exception) -> TypeError:
    """Find the row and column whose value pyarrow could not store, by bisecting the failing column."""
    for column, column_values in values.items():
        if _converts(column_values):
            continue
        low, high = 1, len(column_values)  # the first `high` values fail to convert; find the shortest such prefix
        while low < high:
            middle = (low + high) // 2
            if _converts(column_values[:middle]):
                low = middle + 1
            else:
                high = middle
        index, value = high - 1, column_values[high - 1]
        earlier = next((v for v in column_values[:index] if v is not None), None)
        clash = (
            f"which does not fit the {type(earlier).__name__} values of the rows before it"
            if earlier is not None
            else "which cannot be stored in a dataset column"
        )
        return TypeError(
            f"{name} row {index}: column '{column}' holds a {type(value).__name__} ({value!r:.80}), {clash} "
            f"(pyarrow: {error}). Give the column one type in every row, or remove the column."
        )
    return TypeError(f"{name} cannot be converted to a datasets.Dataset (pyarrow: {error}).")


def format_of_columns(columns: Iterable[str]) -> str | None:
    """The row format that a set of column names selects (see `FORMAT_COLUMNS`), or `None`."""
    columns = set(columns)
    for format_name, required in FORMAT_COLUMNS.items():
        if set(required) <= columns:
            return format_name
    return None


def detect_format(dataset: Dataset, name: str) -> str:
    """Return the dataset's row format, or raise a `ValueError` listing the supported column sets."""
    columns = set(dataset.column_names)
    row_format = format_of_columns(columns)
    if row_format is not None:
        return row_format
    supported = "; ".join(f"{fmt}: {' + '.join(cols)}" for fmt, cols in FORMAT_COLUMNS.items())
    partial = [
        f"{fmt} also needs {' + '.join(repr(c) for c in cols if c not in columns)}"
        for fmt, cols in FORMAT_COLUMNS.items()
        if columns & set(cols)
    ]
    hint = f" ({'; '.join(partial)})" if partial else ""
    raise ValueError(
        f"{name} has columns {sorted(columns)}, which match no supported format{hint}. Rename its columns to one of "
        f"these sets — {supported}."
    )


@dataclass
class RenderedRow:
    """A row split into the text that conditions (`prompt`) and the text whose tokens count (`completion`)."""

    prompt: str
    completion: str
    templated: bool


def require_text(value: Any, name: str, index: int, column: str) -> str:
    """`value` if it is a non-empty string; otherwise an error naming the dataset `name`, the row and the column."""
    if not isinstance(value, str):
        missing = f": the row has no '{column}' value" if value is None else f" ({value!r:.80})"
        raise ValueError(
            f"{name} row {index}: column '{column}' must be a string, got {type(value).__name__}{missing}. Fix the "
            "value or remove the row; bad rows are not dropped silently."
        )
    if not value.strip():
        raise ValueError(
            f"{name} row {index}: column '{column}' is empty. Remove the row or fill it in; empty rows are not "
            "dropped silently."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} row {index}: column '{column}' holds {value[error.start]!r} at character {error.start}, a lone "
            "surrogate that is not valid Unicode (text decoded with the wrong codec, or JSON with a broken \\u "
            "escape). Repair the text, e.g. `text.encode('utf-8', 'replace').decode('utf-8')`."
        ) from None
    return value


def _require_messages(value: Any, name: str, index: int, column: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            f"{name} row {index}: column '{column}' must be a non-empty list of {{'role', 'content'}} messages, "
            f"got {type(value).__name__} ({value!r:.80})."
        )
    for position, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(
                f"{name} row {index}: column '{column}' message {position} must be a dict with a string 'role' "
                f"and 'content', got {type(message).__name__} ({message!r:.80})."
            )
        role = message.get("role")
        if role not in KNOWN_ROLES:
            hint = " (ShareGPT 'from'/'value' keys must be renamed to 'role'/'content')" if "from" in message else ""
            raise ValueError(
                f"{name} row {index}: column '{column}[{position}].role' is {role!r:.80}; it must be one of "
                f"{', '.join(KNOWN_ROLES)}{hint}."
            )
        require_text(message.get("content"), name, index, f"{column}[{position}].content")
    return value


def _require_assistant_last(messages: list[dict[str, str]], name: str, index: int, column: str) -> None:
    if messages[-1]["role"] != "assistant":
        raise ValueError(
            f"{name} row {index}: the last message of column '{column}' has role {messages[-1]['role']!r}; it must be "
            "the assistant's answer, whose tokens the loss counts."
        )


def _check_single_format(row: Mapping[str, Any], row_format: str, name: str, index: int) -> None:
    """A row without its format's columns but with another format's is a mixed-format dataset: say so."""
    missing = [column for column in FORMAT_COLUMNS[row_format] if row.get(column) is None]
    if not missing:
        return
    for other, columns in FORMAT_COLUMNS.items():
        if other != row_format and all(row.get(column) is not None for column in columns):
            raise ValueError(
                f"{name} row {index}: column '{missing[0]}' is missing, and the row has "
                f"{' + '.join(repr(c) for c in columns)} instead: it is a {other} row in a {row_format} dataset "
                f"(the dataset's columns select {row_format}). One dataset holds one format; convert every row to "
                f"the columns {' + '.join(repr(c) for c in FORMAT_COLUMNS[row_format])}."
            )


def check_row(row: Mapping[str, Any], row_format: str, name: str, index: int) -> None:
    """Raise a `ValueError` naming the row and column when `row` cannot be rendered in `row_format`.

    These checks do not depend on the tokenizer; `render_row` runs them too.
    """
    if row_format not in FORMAT_COLUMNS:
        raise ValueError(f"Unknown row format {row_format!r}.")
    _check_single_format(row, row_format, name, index)
    if row_format == QUESTION_ANSWER:
        require_text(row.get("question"), name, index, "question")
        require_text(row.get("answer"), name, index, "answer")
    elif row_format == LANGUAGE_MODELING:
        require_text(row.get("text"), name, index, "text")
    elif row_format == CONVERSATIONAL:
        messages = _require_messages(row.get("messages"), name, index, "messages")
        _require_assistant_last(messages, name, index, "messages")
        if len(messages) == 1:
            raise ValueError(
                f"{name} row {index}: column 'messages' holds only the assistant's answer. Put the message it answers "
                "(e.g. the user's question) before it, or use the language-modelling format {'text': ...}."
            )
    else:
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(prompt, list) or isinstance(completion, list):
            for column, value in (("prompt", prompt), ("completion", completion)):
                if not isinstance(value, list):
                    other = "completion" if column == "prompt" else "prompt"
                    raise ValueError(
                        f"{name} row {index}: column '{column}' is a {type(value).__name__} ({value!r:.80}) but "
                        f"column '{other}' is a list of messages; give both as message lists or both as strings."
                    )
            _require_messages(prompt, name, index, "prompt")
            _require_assistant_last(
                _require_messages(completion, name, index, "completion"), name, index, "completion"
            )
        else:
            require_text(prompt, name, index, "prompt")
            require_text(completion, name, index, "completion")


def _check_one_prompt_kind(rows: Sequence[Mapping[str, Any]], name: str) -> None:
    """Prompt-completion rows are all strings or all message lists: one Arrow column cannot hold both."""
    kinds = ["messages" if isinstance(row.get("prompt"), list) else "strings" for row in rows]
    for index, kind in enumerate(kinds):
        if kind != kinds[0]:
            raise ValueError(
                f"{name} row {index}: columns 'prompt' and 'completion' are {kind}, but row 0's are {kinds[0]}. One "
                "dataset holds one kind: convert every row to message lists, or every row to strings."
            )


def _augmentation_answers(row: Mapping[str, Any], name: str, index: int) -> tuple[str | None, str | None, list[str]]:
    """A question-answer row's paraphrased answer, paraphrased question and perturbed answers, checked.

    `None` and empty values mean "no augmentation for this row"; a value of the wrong type raises a `ValueError`
    rather than being skipped silently.
    """

    def optional(value: Any, column: str) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return require_text(value, name, index, column)

    perturbed = row.get(PERTURBED_ANSWER)
    if perturbed is None or isinstance(perturbed, str):
        perturbed = [perturbed]
    elif not isinstance(perturbed, list):
        raise ValueError(
            f"{name} row {index}: column '{PERTURBED_ANSWER}' must be a string or a list of strings, got "
            f"{type(perturbed).__name__} ({perturbed!r:.80})."
        )
    answers = [optional(answer, f"{PERTURBED_ANSWER}[{position}]") for position, answer in enumerate(perturbed)]
    return (
        optional(row.get(PARAPHRASED_ANSWER), PARAPHRASED_ANSWER),
        optional(row.get(PARAPHRASED_QUESTION), PARAPHRASED_QUESTION),
        [answer for answer in answers if answer is not None],
    )


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


def concatenate_tokenized(parts: Sequence[Dataset | None]) -> Dataset:
    """Concatenate tokenised datasets (same columns), skipping `None` parts."""
    kept = [part for part in parts if part is not None]
    input_ids = [ids for part in kept for ids in part["input_ids"]]
    labels = [lab for part in kept for lab in part["labels"]]
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels})


class ForgetRetainDataset(torch.utils.data.Dataset):
    """Pairs every forget example with a retain example; one epoch is one pass over the forget set.

    Forget example `i` is paired with retain example `(i + epoch · len(forget)) mod len(retain)`, so a retain set
    shorter than the forget set is cycled, and a longer one is walked through over the epochs. The pairing depends
    only on the index and the epoch, which makes runs and resumed runs reproducible.
    """

    def __init__(self, forget: Dataset, retain: Dataset | None) -> None:
        self.forget = forget
        self.retain = retain
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {f"forget_{column}": value for column, value in self.forget[index].items()}
        if self.retain is not None and len(self.retain) > 0:
            retain = self.retain[(index + self.epoch * len(self.forget)) % len(self.retain)]
            item.update({f"retain_{column}": value for column, value in retain.items()})
        return item


@dataclass
class ForgetRetainCollator:
    """Right-pads every token sequence of the examples to one common length, so all go through one forward.

    Keys ending in `input_ids` are padded with `pad_token_id` and get a matching `attention_mask` key; keys ending in
    `labels` are padded with `-100`; any other key (e.g. cached reference log-probabilities) is stacked as floats.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequence_keys = [key for key in examples[0] if key.endswith("input_ids") or key.endswith("labels")]
        length = max(len(example[key]) for example in examples for key in sequence_keys)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, torch.Tensor] = {}
        for key in examples[0]:
            if key.endswith("input_ids"):
                input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
                attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
                for row, example in enumerate(examples):
                    input_ids[row, : len(example[key])] = torch.tensor(example[key], dtype=torch.long)
                    attention_mask[row, : len(example[key])] = 1
                batch[key] = input_ids
                batch[key.removesuffix("input_ids") + "attention_mask"] = attention_mask
            elif key.endswith("labels"):
                labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
                for row, example in enumerate(examples):
                    labels[row, : len(example[key])] = torch.tensor(example[key], dtype=torch.long)
                batch[key] = labels
            else:
                batch[key] = torch.tensor([example[key] for example in examples], dtype=torch.float32)
        return batch

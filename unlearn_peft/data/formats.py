"""Row formats, their detection and validation: every bad row raises naming the dataset, row and column."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from datasets import Dataset, IterableDataset

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

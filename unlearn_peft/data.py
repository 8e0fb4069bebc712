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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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

PARAPHRASED_ANSWER = "paraphrased_answer"
PARAPHRASED_QUESTION = "paraphrased_question"
PERTURBED_ANSWER = "perturbed_answer"


def as_dataset(data: Dataset | Sequence[dict[str, Any]] | None, name: str) -> Dataset | None:
    """Accept a `datasets.Dataset` or a list of row dicts; refuse streaming datasets and other types clearly."""
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, IterableDataset):
        raise TypeError(
            f"{name} is a streaming IterableDataset; unlearning needs a map-style dataset. Load it without "
            "streaming=True or call `Dataset.from_list(list(iterable))`."
        )
    if isinstance(data, Sequence) and not isinstance(data, str) and all(isinstance(row, dict) for row in data):
        if len(data) == 0:
            return Dataset.from_dict({})
        return Dataset.from_list(list(data))
    raise TypeError(f"{name} must be a datasets.Dataset or a list of dicts, got {type(data).__name__}.")


def detect_format(dataset: Dataset, name: str) -> str:
    """Return the dataset's row format, or raise a `ValueError` listing the supported column sets."""
    columns = set(dataset.column_names)
    for format_name, required in FORMAT_COLUMNS.items():
        if set(required) <= columns:
            return format_name
    supported = "; ".join(f"{fmt}: {' + '.join(cols)}" for fmt, cols in FORMAT_COLUMNS.items())
    raise ValueError(
        f"{name} has columns {sorted(columns)}, which match no supported format. Rename its columns to one of "
        f"these sets — {supported}."
    )


@dataclass
class RenderedRow:
    """A row split into the text that conditions (`prompt`) and the text whose tokens count (`completion`)."""

    prompt: str
    completion: str
    templated: bool


def _require_text(value: Any, name: str, index: int, column: str) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f"{name} row {index}: column '{column}' must be a string, got {type(value).__name__} ({value!r:.80})."
        )
    if not value.strip():
        raise ValueError(
            f"{name} row {index}: column '{column}' is empty. Remove the row or fill it in; empty rows are not "
            "dropped silently."
        )
    return value


def _require_messages(value: Any, name: str, index: int, column: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            f"{name} row {index}: column '{column}' must be a non-empty list of {{'role', 'content'}} messages, "
            f"got {type(value).__name__}."
        )
    for position, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(
                f"{name} row {index}: column '{column}' message {position} must be a dict with a string 'role' "
                f"and 'content', got {message!r:.80}."
            )
        _require_text(message.get("content"), name, index, f"{column}[{position}].content")
    return value


def _chat_split(
    tokenizer: PreTrainedTokenizerBase,
    prompt_messages: list[dict[str, str]],
    completion_messages: list[dict[str, str]],
    name: str,
    index: int,
) -> RenderedRow:
    prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt_messages + completion_messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError(
            f"{name} row {index}: the tokenizer's chat template does not render the prompt as a prefix of the whole "
            "conversation, so the answer tokens cannot be located. Use a template whose generation prompt is a "
            "prefix, or pass plain-text prompt/completion strings."
        )
    return RenderedRow(prompt=prompt, completion=full[len(prompt) :], templated=True)


def render_row(row: dict[str, Any], row_format: str, tokenizer: PreTrainedTokenizerBase, name: str, index: int):
    """Render one row into prompt and completion text according to its format."""
    has_template = getattr(tokenizer, "chat_template", None) is not None
    if row_format == QUESTION_ANSWER:
        question = _require_text(row.get("question"), name, index, "question")
        answer = _require_text(row.get("answer"), name, index, "answer")
        if has_template:
            return _chat_split(
                tokenizer,
                [{"role": "user", "content": question}],
                [{"role": "assistant", "content": answer}],
                name,
                index,
            )
        return RenderedRow(prompt=f"Question: {question}\nAnswer:", completion=f" {answer}", templated=False)
    if row_format == PROMPT_COMPLETION:
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(prompt, list) or isinstance(completion, list):
            if not has_template:
                raise ValueError(
                    f"{name} row {index}: conversational prompt/completion needs a tokenizer with a chat template; "
                    "set `tokenizer.chat_template` or pass plain strings."
                )
            return _chat_split(
                tokenizer,
                _require_messages(prompt, name, index, "prompt"),
                _require_messages(completion, name, index, "completion"),
                name,
                index,
            )
        return RenderedRow(
            prompt=_require_text(prompt, name, index, "prompt"),
            completion=_require_text(completion, name, index, "completion"),
            templated=False,
        )
    if row_format == CONVERSATIONAL:
        messages = _require_messages(row.get("messages"), name, index, "messages")
        if messages[-1]["role"] != "assistant":
            raise ValueError(
                f"{name} row {index}: the last message of 'messages' has role {messages[-1]['role']!r}; it must be "
                "the assistant's answer, whose tokens the loss counts."
            )
        if not has_template:
            raise ValueError(
                f"{name} row {index}: the 'messages' format needs a tokenizer with a chat template; set "
                "`tokenizer.chat_template` or use prompt/completion strings."
            )
        return _chat_split(tokenizer, messages[:-1], messages[-1:], name, index)
    if row_format == LANGUAGE_MODELING:
        return RenderedRow(prompt="", completion=_require_text(row.get("text"), name, index, "text"), templated=False)
    raise ValueError(f"Unknown row format {row_format!r}.")


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
            raise ValueError(
                f"{name} row {index}: no answer token is left to learn from (prompt of {len(prompt_ids)} tokens, "
                f"max_length={max_length}). Raise max_length or shorten the prompt."
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


def _optional_text(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    return value if isinstance(value, str) and value.strip() else None


def paraphrase_augmentation(forget_dataset: Dataset) -> Dataset | None:
    """Extra forget rows from TOFU-style paraphrases (ULD paper §3.3), in dataset order.

    Each question-answer row with `paraphrased_answer` adds (question, paraphrased answer); with
    `paraphrased_question` it adds (paraphrased question, answer). Returns `None` when no row has either.
    """
    columns = set(forget_dataset.column_names)
    if not {"question", "answer"} <= columns or not ({PARAPHRASED_ANSWER, PARAPHRASED_QUESTION} & columns):
        return None
    rows: list[dict[str, str]] = []
    for row in forget_dataset:
        paraphrased_answer = _optional_text(row, PARAPHRASED_ANSWER)
        paraphrased_question = _optional_text(row, PARAPHRASED_QUESTION)
        if paraphrased_answer is not None:
            rows.append({"question": row["question"], "answer": paraphrased_answer})
        if paraphrased_question is not None:
            rows.append({"question": paraphrased_question, "answer": row["answer"]})
    return Dataset.from_list(rows) if rows else None


def perturbed_retain_augmentation(forget_dataset: Dataset) -> Dataset | None:
    """Extra retain rows from the forget rows' `perturbed_answer`s (ULD paper §3.3), in dataset order.

    Each (question, wrong answer) pair is something the assistant must not remember, so that it singles out the
    true forget answers. Duplicates within a row are kept once. Returns `None` when the column is absent or empty.
    """
    columns = set(forget_dataset.column_names)
    if not {"question", PERTURBED_ANSWER} <= columns:
        return None
    rows: list[dict[str, str]] = []
    for row in forget_dataset:
        perturbed = row.get(PERTURBED_ANSWER)
        answers: Iterable[Any] = [perturbed] if isinstance(perturbed, str) else (perturbed or [])
        for answer in dict.fromkeys(a for a in answers if isinstance(a, str) and a.strip()):
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

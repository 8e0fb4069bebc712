"""Datasets for unlearning: formats, chat template, answer masking, augmentation and the forget/retain collator.

One concept per module: `formats` (detection and validation), `rendering` (chat template, answer masking,
tokenization), `augmentation` (TOFU paraphrases and perturbed answers, refusals), `collator` (forget/retain pairs),
`batch` (the typed batch the trainer trains on).

Supported row formats (the TRL formats, plus TOFU's question/answer):

| format | columns | tokens that count in the loss |
|---|---|---|
| prompt-completion | `prompt`, `completion` (strings, or lists of messages) | the completion |
| conversational | `messages` (a list of `{"role", "content"}`, the last from the assistant) | the last message |
| language modelling | `text` | all of them |
| question-answer (TOFU) | `question`, `answer` | the answer |

Conversational rows and question-answer rows are rendered with the tokenizer's chat template when it has one.
"""

from .augmentation import (
    DEFAULT_REFUSAL_ANSWERS,
    TRUE_ANSWERS,
    keep_wrong_answer_tokens,
    paraphrase_augmentation,
    perturbed_retain_augmentation,
    with_refusal_answers,
    wrong_answer_positions,
)
from .batch import StepCounts, TokenBatch, UnlearningBatch
from .collator import (
    GROUP_COLUMN_PREFIXES,
    REFUSAL_PREFIX,
    ForgetRetainCollator,
    ForgetRetainDataset,
    concatenate_tokenized,
    pad_sequences,
)
from .formats import (
    ANSWER_COLUMN,
    CONVERSATIONAL,
    FORMAT_COLUMNS,
    KNOWN_ROLES,
    LANGUAGE_MODELING,
    PARAPHRASED_ANSWER,
    PARAPHRASED_QUESTION,
    PERTURBED_ANSWER,
    PROMPT_COLUMN,
    PROMPT_COMPLETION,
    QUESTION_ANSWER,
    as_dataset,
    check_row,
    detect_format,
    format_of_columns,
    require_text,
)
from .rendering import (
    RenderedRow,
    render_row,
    tokenize_dataset,
    tokenize_row,
)

__all__ = [
    "ANSWER_COLUMN",
    "CONVERSATIONAL",
    "DEFAULT_REFUSAL_ANSWERS",
    "FORMAT_COLUMNS",
    "GROUP_COLUMN_PREFIXES",
    "ForgetRetainCollator",
    "ForgetRetainDataset",
    "KNOWN_ROLES",
    "LANGUAGE_MODELING",
    "PARAPHRASED_ANSWER",
    "PARAPHRASED_QUESTION",
    "PERTURBED_ANSWER",
    "PROMPT_COLUMN",
    "PROMPT_COMPLETION",
    "QUESTION_ANSWER",
    "REFUSAL_PREFIX",
    "RenderedRow",
    "StepCounts",
    "TokenBatch",
    "UnlearningBatch",
    "as_dataset",
    "check_row",
    "concatenate_tokenized",
    "detect_format",
    "format_of_columns",
    "pad_sequences",
    "paraphrase_augmentation",
    "perturbed_retain_augmentation",
    "keep_wrong_answer_tokens",
    "wrong_answer_positions",
    "TRUE_ANSWERS",
    "render_row",
    "require_text",
    "tokenize_dataset",
    "tokenize_row",
    "with_refusal_answers",
]

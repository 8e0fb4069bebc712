"""Length-normalised answer probability, the TOFU building block."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..answer_tokens import IGNORE_INDEX, AnswerTokens
from ..data import QUESTION_ANSWER, pad_sequences, render_row, tokenize_row
from ..losses import sequence_log_probs


@torch.no_grad()
def answer_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question_answers: Sequence[tuple[str, str]],
    *,
    batch_size: int = 8,
    description: str | None = None,
) -> list[float]:
    r"""`p = exp(−mean NLL of the answer tokens | question)` of each `(question, answer)` pair, batched.

    Rows are rendered as in training (chat template if any) and right-padded with an attention mask, so every real
    token sees exactly the positions it sees alone; pairs are grouped by length to keep padding small and returned
    in input order. Works on any causal LM whose forward returns `.logits`: a plain model, a PEFT model or a
    `ULDModel`. (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", §2.2.)

    Args:
        model: the causal LM to score.
        tokenizer: its tokenizer.
        question_answers: `(question, answer)` pairs.
        batch_size: sequences per forward pass.
        description: a progress-bar label; no bar when `None`.
    """
    if batch_size < 1:
        raise ValueError(f"answer_probabilities: batch_size must be at least 1, got {batch_size}.")
    tokenized = [
        tokenize_row(
            render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "evaluation", index),
            tokenizer,
        )
        for index, (question, answer) in enumerate(question_answers)
    ]
    device = next(model.parameters()).device
    # Right padding leaves real tokens untouched whatever the pad id; eos or 0 serve when there is no pad token.
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    order = sorted(range(len(tokenized)), key=lambda index: len(tokenized[index][0]) + len(tokenized[index][1]))
    probabilities = [0.0] * len(tokenized)
    for start in tqdm(range(0, len(order), batch_size), desc=description, leave=False, disable=description is None):
        batch_indices = order[start : start + batch_size]
        rows = [
            {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}
            for prompt, answer in (tokenized[index] for index in batch_indices)
        ]
        batch = pad_sequences(rows, pad_id)
        logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits
        sums, counts = sequence_log_probs(AnswerTokens.from_logits(logits, batch.labels.to(logits.device)))
        for index, probability in zip(batch_indices, (sums / counts).exp().tolist(), strict=True):
            probabilities[index] = probability
    return probabilities


def answer_probability(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, question: str, answer: str
) -> float:
    r"""`p = exp(−mean NLL of the answer tokens | question)` of one pair (see [`answer_probabilities`])."""
    return answer_probabilities(model, tokenizer, [(question, answer)])[0]

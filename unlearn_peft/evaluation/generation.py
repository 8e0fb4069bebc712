"""Batched greedy answers, rendered the way training renders prompts (chat template when the tokenizer has one)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import QUESTION_ANSWER, render_row


def question_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """The prompt text of a question, exactly as in training (the answer is what follows it)."""
    return render_row({"question": question, "answer": "-"}, QUESTION_ANSWER, tokenizer, "evaluation", 0).prompt


@torch.no_grad()
def greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    description: str = "Generating",
) -> list[str]:
    """Greedy answers to `questions`, batched with left padding; special tokens are stripped from the output."""
    answers: list[str] = []
    device = next(model.parameters()).device
    templated = getattr(tokenizer, "chat_template", None) is not None
    for start in tqdm(range(0, len(questions), batch_size), desc=description, leave=False):
        prompts = [question_prompt(tokenizer, q) for q in questions[start : start + batch_size]]
        inputs = tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=not templated
        ).to(device)
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers.extend(text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return answers

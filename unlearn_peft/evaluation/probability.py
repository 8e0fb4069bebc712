"""Length-normalised answer probability, the TOFU building block."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import QUESTION_ANSWER, render_row, tokenize_row


@torch.no_grad()
def answer_probability(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, question: str, answer: str
) -> float:
    r"""`p = exp(−mean NLL of the answer tokens | question)`, rendered as in training (chat template if any).

    Works on any causal LM whose forward returns `.logits`: a plain model, a PEFT model or a `ULDModel`.
    (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", §2.2.)
    """
    rendered = render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "evaluation", 0)
    prompt_ids, completion_ids = tokenize_row(rendered, tokenizer)
    device = next(model.parameters()).device
    input_ids = torch.tensor([prompt_ids + completion_ids], device=device)
    logits = model(input_ids=input_ids).logits
    log_probs = torch.log_softmax(logits[0, len(prompt_ids) - 1 : -1].float(), dim=-1)
    targets = torch.tensor(completion_ids, device=device)[:, None]
    return float(log_probs.gather(-1, targets).mean().exp())

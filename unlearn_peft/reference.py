"""The reference model of the baselines (NPO, IdkDPO, the KL retain term) and its cached log-probabilities.

The reference model `π_ref` of a baseline is the model before unlearning. With a PEFT adapter it needs no second
copy: it is the same model with the adapter disabled. Reference log-probabilities of the forget answers never change
during training, so they are computed once, before training, and stored with the forget examples.
"""

from __future__ import annotations

import torch
from datasets import Dataset
from peft import PeftModel
from tqdm.auto import tqdm

from .answer_tokens import forward_answer_tokens
from .data import pad_sequences
from .losses import sequence_log_probs
from .utils import eval_mode


@torch.no_grad()
def reference_sequence_log_probs(
    model: PeftModel,
    dataset: Dataset,
    pad_token_id: int,
    *,
    input_ids_column: str = "input_ids",
    labels_column: str = "labels",
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    description: str = "Reference log-probs",
    disable_progress: bool = False,
) -> list[float]:
    """`log π_ref(y|x)` of every example (summed over answer tokens), with the adapter disabled, in dataset order."""
    values: list[float] = []
    with eval_mode(model), model.disable_adapter():
        for start in tqdm(range(0, len(dataset), batch_size), desc=description, disable=disable_progress):
            rows = dataset[start : start + batch_size]
            batch = pad_sequences(
                [
                    {"input_ids": ids, "labels": labels}
                    for ids, labels in zip(rows[input_ids_column], rows[labels_column], strict=True)
                ],
                pad_token_id,
            ).to(device)
            answer = forward_answer_tokens(model, batch.input_ids, batch.attention_mask, batch.labels)
            log_probs, _ = sequence_log_probs(answer)
            values.extend(log_probs.float().cpu().tolist())
    return values

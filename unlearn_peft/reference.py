"""The reference model of the baselines (NPO, IdkDPO, the KL retain term) and its cached log-probabilities.

The reference model `π_ref` of a baseline is the model before unlearning. With a PEFT adapter it needs no second
copy: it is the same model with the adapter disabled. Reference log-probabilities of the forget answers never change
during training, so they are computed once, before training, and stored with the forget examples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from datasets import Dataset
from peft import PeftModel
from tqdm.auto import tqdm

from .answer_tokens import forward_answer_tokens
from .losses import sequence_log_probs
from .utils import eval_mode


@torch.no_grad()
def reference_sequence_log_probs(
    model: PeftModel,
    dataset: Dataset,
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
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
            batch = collate(
                [
                    {"input_ids": ids, "labels": labels}
                    for ids, labels in zip(rows[input_ids_column], rows[labels_column], strict=True)
                ]
            )
            answer = forward_answer_tokens(
                model,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["labels"].to(device),
            )
            log_probs, _ = sequence_log_probs(answer)
            values.extend(log_probs.float().cpu().tolist())
    return values

"""Forget and retain rows paired per step, and the collator that pads each side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from ..losses import IGNORE_INDEX


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

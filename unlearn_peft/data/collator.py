"""Forget and retain rows paired per step, and the collator that pads them into an [`UnlearningBatch`]."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from ..losses import IGNORE_INDEX
from .batch import TokenBatch, UnlearningBatch

REFUSAL_PREFIX = "refusal_"
"""Columns of a forget row holding its refusal sequence (IdkDPO): `refusal_input_ids`, `refusal_labels`."""
GROUP_COLUMN_PREFIXES = {"forget": "", "refusal": REFUSAL_PREFIX}
"""The forget-row column prefix of each batch group a forget row fills (`<prefix>input_ids`, `<prefix>labels`,
`<prefix>reference_log_prob`)."""


def concatenate_tokenized(parts: Sequence[Dataset | None]) -> Dataset:
    """Concatenate tokenised datasets (same columns), skipping `None` parts."""
    kept = [part for part in parts if part is not None]
    input_ids = [ids for part in kept for ids in part["input_ids"]]
    labels = [lab for part in kept for lab in part["labels"]]
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels})


class ForgetRetainDataset(torch.utils.data.Dataset):
    """Pairs every forget example with a retain example; one epoch is one pass over the forget set.

    Item `i` is `{"forget": <forget row i>, "retain": <retain row>}` (no `"retain"` without a retain set). Forget
    example `i` is paired with retain example `(i + epoch · len(forget)) mod len(retain)`, so a retain set shorter
    than the forget set is cycled, and a longer one is walked through over the epochs. The pairing depends only on
    the index and the epoch, which makes runs and resumed runs reproducible.
    """

    def __init__(self, forget: Dataset, retain: Dataset | None) -> None:
        self.forget = forget
        self.retain = retain
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, index: int) -> dict[str, dict[str, Any]]:
        item = {"forget": self.forget[index]}
        if self.retain is not None and len(self.retain) > 0:
            item["retain"] = self.retain[(index + self.epoch * len(self.forget)) % len(self.retain)]
        return item


def pad_sequences(
    rows: Sequence[Mapping[str, Any]], pad_token_id: int, length: int | None = None, prefix: str = ""
) -> TokenBatch:
    """Right-pad the rows' `<prefix>input_ids` (with `pad_token_id`) and `<prefix>labels` (with -100) to `length`
    (default: the longest), stack `<prefix>reference_log_prob` when the rows have it, and concatenate their
    `<prefix>plausible_token_ids` (one list of token ids per counted token) into a `-1`-padded tensor."""
    input_ids_key, labels_key, reference_key = f"{prefix}input_ids", f"{prefix}labels", f"{prefix}reference_log_prob"
    plausible_key = f"{prefix}plausible_token_ids"
    if length is None:
        length = max(max(len(row[input_ids_key]), len(row[labels_key])) for row in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row[input_ids_key])] = torch.tensor(row[input_ids_key], dtype=torch.long)
        attention_mask[index, : len(row[input_ids_key])] = 1
        labels[index, : len(row[labels_key])] = torch.tensor(row[labels_key], dtype=torch.long)
    reference = None
    if reference_key in rows[0]:
        reference = torch.tensor([row[reference_key] for row in rows], dtype=torch.float32)
    plausible = None
    if plausible_key in rows[0]:
        plausible = pad_token_sets([ids for row in rows for ids in row[plausible_key]])
    return TokenBatch(input_ids, attention_mask, labels, reference, plausible)


def pad_token_sets(token_sets: Sequence[Sequence[int]]) -> torch.Tensor:
    """`(len(token_sets), longest set)` long tensor of the sets' token ids, padded with -1."""
    padded = torch.full((len(token_sets), max((len(ids) for ids in token_sets), default=1)), -1, dtype=torch.long)
    for index, ids in enumerate(token_sets):
        padded[index, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return padded


@dataclass
class ForgetRetainCollator:
    """Pads the forget, refusal and retain sequences of the examples to one common length, so that all go through
    one forward, and returns them as an [`UnlearningBatch`].

    Examples are [`ForgetRetainDataset`] items. A forget row with `refusal_input_ids` / `refusal_labels` columns
    (IdkDPO) gives the batch its `refusal` group; `reference_log_prob` columns (cached reference log-probabilities)
    fill the groups' `reference_log_prob`.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, dict[str, Any]]]) -> UnlearningBatch:
        forget_rows = [example["forget"] for example in examples]
        has_retain = "retain" in examples[0]
        if any(("retain" in example) != has_retain for example in examples):
            raise ValueError("Every example of a batch must have a 'retain' row, or none of them.")
        retain_rows = [example["retain"] for example in examples] if has_retain else []
        has_refusal = f"{REFUSAL_PREFIX}input_ids" in forget_rows[0]
        lengths = [len(row[key]) for row in forget_rows + retain_rows for key in ("input_ids", "labels")]
        if has_refusal:
            lengths += [len(row[f"{REFUSAL_PREFIX}{key}"]) for row in forget_rows for key in ("input_ids", "labels")]
        length = max(lengths)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return UnlearningBatch(
            forget=pad_sequences(forget_rows, self.pad_token_id, length),
            retain=pad_sequences(retain_rows, self.pad_token_id, length) if has_retain else None,
            refusal=pad_sequences(forget_rows, self.pad_token_id, length, REFUSAL_PREFIX) if has_refusal else None,
        )

"""The typed batch `UnlearnTrainer` trains on, and the counts an optimiser step's loss is averaged over.

A batch holds up to three groups of right-padded sequences, all padded to one length so that they go through one
forward: the forget examples, the retain examples, and (IdkDPO) the forget questions answered with a refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace

import torch

from ..losses import count_loss_tokens


@dataclass
class TokenBatch:
    """Right-padded token sequences of one group.

    Attributes:
        input_ids: `(rows, length)` token ids, padded with the tokenizer's pad token.
        attention_mask: `(rows, length)`, 1 on real tokens and 0 on padding.
        labels: `(rows, length)`, the token ids where the loss counts (the answer) and -100 elsewhere.
        reference_log_prob: `(rows,)` float, `log π_ref(y|x)` summed over each answer, when the method caches its
            reference model's log-probabilities (NPO, IdkDPO); else `None`.
        plausible_token_ids: `(answer tokens, max set size)` long, for each counted token in row-major order the
            target's plausible tokens at that position, padded with -1, when the method caches them (ULD's retain
            rows); else `None`.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    reference_log_prob: torch.Tensor | None = None
    plausible_token_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TokenBatch:
        moved = {
            field.name: value.to(device, non_blocking=non_blocking)
            for field in fields(self)
            if (value := getattr(self, field.name)) is not None
        }
        return replace(self, **moved)


@dataclass
class UnlearningBatch:
    """One micro-batch: forget examples, and the retain / refusal examples when the method trains on them.

    Attributes:
        forget: the forget examples (what the model must unlearn).
        retain: the retain examples paired with them (what it must keep), or `None` without a retain term.
        refusal: IdkDPO's preferred answers, each forget question answered with a refusal; else `None`.
    """

    forget: TokenBatch
    retain: TokenBatch | None = None
    refusal: TokenBatch | None = None

    def __len__(self) -> int:
        return len(self.forget)

    def groups(self) -> dict[str, TokenBatch]:
        """The groups present, by name, in forward order: forget, refusal, retain."""
        named = {"forget": self.forget, "refusal": self.refusal, "retain": self.retain}
        return {name: group for name, group in named.items() if group is not None}

    def to(self, device: torch.device | str, non_blocking: bool = False) -> UnlearningBatch:
        """The batch on `device` (accelerate's `send_to_device` calls this)."""
        return UnlearningBatch(
            **{name: group.to(device, non_blocking=non_blocking) for name, group in self.groups().items()}
        )

    def num_tokens(self) -> int:
        """Non-padding tokens of every group (for FLOPs and tokens-seen accounting)."""
        return sum(int(group.attention_mask.sum()) for group in self.groups().values())


@dataclass(frozen=True)
class StepCounts:
    """What an optimiser step's loss terms are means over, summed over its micro-batches (and processes).

    Token-level terms divide by answer tokens, sequence-level terms (NPO, SimNPO, IdkDPO) by forget sequences, so
    that gradient accumulation and data parallelism give the same loss as one large batch. A field is `None` when
    nothing was counted (a single `compute_loss` call outside training): terms then average over their own batch.
    """

    forget_tokens: torch.Tensor | None = None
    retain_tokens: torch.Tensor | None = None
    forget_sequences: torch.Tensor | None = None

    @classmethod
    def of(cls, batches: Iterable[UnlearningBatch], device: torch.device | str) -> StepCounts:
        batches = list(batches)
        if not batches:
            return cls()
        retain = [batch.retain for batch in batches if batch.retain is not None]
        return cls(
            forget_tokens=sum(count_loss_tokens(batch.forget.labels) for batch in batches).to(device),
            retain_tokens=sum(count_loss_tokens(group.labels) for group in retain).to(device) if retain else None,
            forget_sequences=torch.tensor(sum(len(batch.forget) for batch in batches), device=device),
        )

    def summed(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> StepCounts:
        """The counts with `reduce` (e.g. a gather-and-sum over processes) applied to each present field."""
        return StepCounts(
            **{field.name: reduce(value) for field in fields(self) if (value := getattr(self, field.name)) is not None}
        )

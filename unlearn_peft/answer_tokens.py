"""Answer tokens: the next-token logits a loss counts, with the LM head computed only there.

Every unlearning loss counts answer tokens only (labels ≠ −100). On TOFU about 60% of a padded batch is prompt or
padding, and the LM head is expensive: a `hidden × vocab` matmul (on SmolLM2-135M as costly as 8 of its 30 decoder
layers) followed by vocabulary-sized log-softmax work, whose outputs are the largest tensors of a training step.
So the decoder layers see every token, but the LM head runs only at the positions whose next token counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

IGNORE_INDEX = -100


def answer_position_mask(labels: torch.Tensor) -> torch.Tensor:
    """Boolean `(batch, length)` mask of the positions `t` whose next token `labels[:, t + 1]` is counted."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:].ne(IGNORE_INDEX)
    return mask


@dataclass(frozen=True)
class AnswerTokens:
    """Next-token logits at the counted positions of a batch of sequences, flattened in row-major order.

    Attributes:
        logits (`torch.Tensor` of shape `(num_tokens, vocab_size)`):
            The logits at the position before each counted token.
        targets (`torch.Tensor` of shape `(num_tokens,)`):
            The counted tokens.
        rows (`torch.Tensor` of shape `(num_tokens,)`):
            The batch row (sequence) of each counted token.
        num_rows (`int`):
            The number of sequences in the batch, including any without a counted token.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor
    num_rows: int

    @classmethod
    def from_logits(cls, logits: torch.Tensor, labels: torch.Tensor) -> AnswerTokens:
        """Select the counted tokens from a causal LM's full `(batch, length, vocab)` logits and its `labels`."""
        mask = answer_position_mask(labels)
        return cls.from_selected_logits(logits[mask], labels, mask)

    @classmethod
    def from_selected_logits(
        cls, selected_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
    ) -> AnswerTokens:
        """Wrap logits already computed at `mask`'s positions only (row-major order, as `hidden[mask]` gives)."""
        targets = labels[:, 1:][mask[:, :-1]]
        rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(mask)[mask]
        if selected_logits.shape[0] != targets.shape[0]:
            raise ValueError(
                f"Got logits for {selected_logits.shape[0]} positions but the labels count {targets.shape[0]} tokens."
            )
        return cls(logits=selected_logits, targets=targets, rows=rows, num_rows=labels.shape[0])

    @property
    def num_tokens(self) -> int:
        return self.targets.shape[0]

    def split(self, sizes: Sequence[int]) -> list[AnswerTokens]:
        """Split into groups of consecutive sequences (`sizes[i]` sequences each), rows renumbered in each group."""
        tokens_per_row = torch.bincount(self.rows, minlength=self.num_rows)
        groups, row_start, token_start = [], 0, 0
        for size in sizes:
            count = int(tokens_per_row[row_start : row_start + size].sum())
            window = slice(token_start, token_start + count)
            groups.append(AnswerTokens(self.logits[window], self.targets[window], self.rows[window] - row_start, size))
            row_start, token_start = row_start + size, token_start + count
        return groups


@contextmanager
def lm_head_only_at(model: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """Within the block, the model's LM head receives only the hidden states at `mask`'s positions.

    A forward pre-hook on the output embeddings turns their `(batch, length, hidden)` input into `(n, hidden)`, so
    the forward returns `(n, vocab)` logits. The model is still called as a whole, so wrappers (PEFT, DDP, FSDP,
    gradient checkpointing) see a normal forward.
    """
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, nn.Module):
        yield
        return

    def select(module: nn.Module, args: tuple) -> tuple | None:
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[:2] != mask.shape:
            return None  # not the call this block is for (e.g. `logits_to_keep`): leave it alone
        return (hidden[mask], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def forward_answer_tokens(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    unwrapped_model: nn.Module | None = None,
) -> AnswerTokens:
    """Run `model` on a batch and return its logits at the counted positions only (LM head computed there only).

    Args:
        model (`nn.Module`):
            A causal LM, possibly wrapped (PEFT, DDP, FSDP); it is called with `input_ids` and `attention_mask`.
        input_ids, attention_mask, labels (`torch.Tensor` of shape `(batch, length)`):
            The batch; `labels` has `-100` on tokens that are not counted.
        unwrapped_model (`nn.Module`, *optional*):
            The model under a distributed wrapper, where `get_output_embeddings` lives. Defaults to `model`.

    Returns:
        [`AnswerTokens`]. A model whose LM head is not its output-embeddings module still works: its full logits are
        computed and the counted positions selected afterwards.
    """
    mask = answer_position_mask(labels)
    with lm_head_only_at(unwrapped_model if unwrapped_model is not None else model, mask):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    if logits.dim() == 3:
        logits = logits[mask]
    return AnswerTokens.from_selected_logits(logits, labels, mask)

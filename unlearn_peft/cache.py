"""`ULDCache`: the target's KV cache plus the assistant's, moving together through generation."""

from __future__ import annotations

import torch
from transformers import DynamicCache, PretrainedConfig


class ULDCache(DynamicCache):
    """A [`~transformers.DynamicCache`] for the target stack that carries the assistant stack's cache along.

    Generation sees one cache object: its length is the target's, and beam reordering, cropping and batch
    expansion or selection apply to both stacks, so each stack encodes the prompt once and then one token per step.
    """

    def __init__(self, config: PretrainedConfig | None = None, assistant_config: PretrainedConfig | None = None):
        super().__init__(config=config)
        self.assistant_cache = DynamicCache(config=assistant_config)

    def reset(self) -> None:
        super().reset()
        self.assistant_cache.reset()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self.assistant_cache.reorder_cache(beam_idx)

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        self.assistant_cache.crop(tokens_to_remove)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.assistant_cache.batch_repeat_interleave(repeats)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self.assistant_cache.batch_select_indices(indices)

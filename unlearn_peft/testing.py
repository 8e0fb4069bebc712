"""Helpers for tests, quick benchmarks and examples: tiny random models that share a real tokenizer."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


def tiny_random_llama(
    tokenizer: PreTrainedTokenizerBase, num_layers: int = 4, hidden_size: int = 64, seed: int = 0
) -> LlamaForCausalLM:
    """A randomly initialised Llama with `tokenizer`'s vocabulary (so its chat template applies), in eval mode."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.config.architectures = ["LlamaForCausalLM"]
    return model.eval()

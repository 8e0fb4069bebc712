"""Helpers for tests, quick benchmarks and examples: tiny random models that share a real tokenizer."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .data import QUESTION_ANSWER, render_row, tokenize_row
from .evaluation import answer_probabilities


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


# Per-architecture settings that the shared keyword arguments below do not cover. Gemma-2's logit soft-capping and
# Granite's logit scaling are set so that a model's logits are not plain `lm_head(hidden)`.
_TINY_EXTRA_SETTINGS: dict[str, dict[str, object]] = {
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8, "final_logit_softcapping": 5.0},
    "gemma3_text": {"head_dim": 8},
    "granite": {"logits_scaling": 2.0},
    "opt": {"ffn_dim": 64, "word_embed_proj_dim": 32},
    "falcon": {"new_decoder_architecture": False, "multi_query": True},
    "gpt2": {"n_embd": 32, "n_layer": 4, "n_head": 4, "n_positions": 256},
}


def tiny_random_causal_lm(
    tokenizer: PreTrainedTokenizerBase, model_type: str, num_layers: int = 4, seed: int = 0, hidden_size: int = 32
) -> PreTrainedModel:
    """A randomly initialised causal LM of `model_type` (e.g. `"qwen2"`, `"gpt_neox"`) with `tokenizer`'s vocabulary.

    Hidden size 32 by default (MLP twice that), 4 heads (2 key-value heads where the architecture has them), in eval
    mode.
    """
    settings: dict[str, object] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
        **_TINY_EXTRA_SETTINGS.get(model_type, {}),
    }
    if model_type == "gpt2":
        settings["n_layer"] = num_layers
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.config.architectures = [type(model).__name__]
    return model.eval()


def memorize(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict[str, str]],
    *,
    min_answer_probability: float = 0.95,
    learning_rate: float = 1e-4,
    batch_size: int = 8,
    max_epochs: int = 60,
    seed: int = 0,
) -> float:
    """Fine-tune every weight of `model` on question-answer `rows` until it has memorised them.

    Builds the situation unlearning is for (TOFU's fine-tuned targets, any model trained on the data to remove):
    training stops after the first epoch at which the mean answer probability `exp(−mean NLL)` reaches
    `min_answer_probability`. Answer tokens only count in the loss; rows are rendered as in training. Returns the
    final mean answer probability; raises when `max_epochs` did not reach the goal. The model is left in eval mode,
    on its device (batches follow the model's device, so it trains on a GPU when the model is there).
    """
    examples = [
        tokenize_row(render_row(row, QUESTION_ANSWER, tokenizer, "memorised rows", index), tokenizer)
        for index, row in enumerate(rows)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    probability = 0.0
    for _ in tqdm(range(max_epochs), desc="Memorising", leave=False):
        model.train()
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            batch = [examples[index] for index in order[start : start + batch_size]]
            width = max(len(prompt) + len(completion) for prompt, completion in batch)
            input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (prompt, completion) in enumerate(batch):
                ids = prompt + completion
                input_ids[row, : len(ids)] = torch.tensor(ids)
                labels[row, len(prompt) : len(ids)] = torch.tensor(completion)
                attention_mask[row, : len(ids)] = 1
            device = next(model.parameters()).device
            loss = model(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), labels=labels.to(device)
            ).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            values = answer_probabilities(
                model, tokenizer, [(row["question"], row["answer"]) for row in rows], batch_size=batch_size
            )
        probability = sum(values) / len(values)
        if probability >= min_answer_probability:
            return probability
    raise RuntimeError(
        f"memorize: mean answer probability {probability:.3f} after {max_epochs} epochs is below "
        f"{min_answer_probability}; raise max_epochs or learning_rate."
    )

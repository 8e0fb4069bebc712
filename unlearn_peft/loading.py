"""Loading the model to unlearn from a Hub id or a local path, with TRL's `model_init_kwargs` conventions."""

from __future__ import annotations

from typing import Any

from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel

from .assistant import resolve_assistant_num_layers
from .quiet import announce_quantization_messages
from .truncated import load_assistant_layers, load_config
from .utils import torch_dtype


def load_causal_lm(
    model_id: str,
    model_init_kwargs: dict[str, Any] | None,
    *,
    only_assistant_layers: bool = False,
    assistant_num_layers: int | None = None,
) -> PreTrainedModel:
    """Load a causal LM by Hub id or local path with `model_init_kwargs` (TRL conventions).

    With `only_assistant_layers=True`, only the embeddings, the first `assistant_num_layers` decoder layers (default
    a quarter), the final norm and the LM head are loaded, and from the Hub downloaded: see `unlearn_peft.truncated`.
    """
    kwargs = dict(model_init_kwargs or {})
    if kwargs.get("dtype", "auto") != "auto":
        kwargs["dtype"] = torch_dtype(kwargs["dtype"], "model_init_kwargs['dtype']")
    if isinstance(kwargs.get("quantization_config"), dict):
        kwargs["quantization_config"] = BitsAndBytesConfig(**kwargs["quantization_config"])
    if kwargs.get("quantization_config") is not None:
        announce_quantization_messages()
    if kwargs.get("trust_remote_code"):
        raise ValueError("unlearn-peft never runs remote code: remove trust_remote_code from model_init_kwargs.")
    if only_assistant_layers:
        config = load_config(model_id, kwargs)
        num_layers = resolve_assistant_num_layers(assistant_num_layers, config)
        return load_assistant_layers(model_id, num_layers, config, **kwargs)
    return AutoModelForCausalLM.from_pretrained(model_id, **kwargs)

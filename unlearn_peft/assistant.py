"""The ULD assistant: an early-exit view of the target model and the LoRA adapter on its layers.

The assistant `A_K` is the target's embeddings → decoder layers `0..K-1` → final norm → LM head. It is built as a
*view*: new module objects that hold the target's own parameter tensors (no copy), with only the first K decoder
layers in its layer list, so its forward never runs layers `K..N-1`. Because the module objects are new, a LoRA
adapter injected into the view does not appear in the target's own forward.
"""

from __future__ import annotations

import copy
import functools
import types
from collections.abc import Iterable

import torch
from peft import LoraConfig
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

# Linear layers of a decoder block that the paper adapts (Llama / Mistral / Qwen naming).
DEFAULT_LORA_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


def num_decoder_layers(config: PretrainedConfig) -> int:
    """Number of decoder layers declared by a model config."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text_config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(
        f"Cannot find the number of decoder layers in the {type(config).__name__}; expected `num_hidden_layers`."
    )


def resolve_assistant_num_layers(requested: int | None, config: PretrainedConfig) -> int:
    """The assistant's layer count: `requested`, or a quarter of the model's layers (at least 1), validated."""
    total = num_decoder_layers(config)
    if requested is None:
        return max(1, total // 4)
    if requested < 1 or requested >= total:
        raise ValueError(
            f"assistant_num_layers={requested} is out of range for a model with {total} decoder layers: it must be "
            f"between 1 and {total - 1} (the assistant is a strict prefix of the model; the paper uses a quarter)."
        )
    return requested


def find_decoder_layers(model: nn.Module) -> tuple[nn.Module, str]:
    """Return `(parent, attribute)` of the `nn.ModuleList` holding the model's decoder layers."""
    total = num_decoder_layers(model.config)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    for attribute in ("layers", "h", "blocks"):
        candidate = getattr(decoder, attribute, None)
        if isinstance(candidate, nn.ModuleList) and len(candidate) == total:
            return decoder, attribute
    for parent in model.modules():
        for attribute, child in parent.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == total:
                return parent, attribute
    raise ValueError(f"Cannot find the list of {total} decoder layers in {type(model).__name__}.")


def _rebind_forward(clone: nn.Module, original: nn.Module) -> None:
    # accelerate's dispatch hooks store a `forward` bound to the original module in the instance dict; a clone must
    # run its own children, so bind that forward to the clone.
    forward = clone.__dict__.get("forward")
    if isinstance(forward, functools.partial) and forward.args and forward.args[0] is original:
        clone.forward = functools.update_wrapper(
            functools.partial(forward.func, clone, *forward.args[1:], **forward.keywords), forward
        )
    elif isinstance(forward, types.MethodType) and forward.__self__ is original:
        clone.forward = types.MethodType(forward.__func__, clone)


def _shallow_clone(
    module: nn.Module,
    memo: dict[int, nn.Module],
    replace_config: tuple[PretrainedConfig, PretrainedConfig],
    truncate: tuple[nn.Module, str, int],
) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    clone = module.__class__.__new__(module.__class__)
    clone.__dict__ = module.__dict__.copy()
    memo[id(module)] = clone
    # Each container gets its own dict (copy.copy would share them), holding the same tensors.
    clone._parameters = module._parameters.copy()
    clone._buffers = module._buffers.copy()
    for name, value in module.__dict__.items():
        if name.endswith("_hooks") or name.endswith("_hooks_with_kwargs") or name.endswith("_hooks_always_called"):
            clone.__dict__[name] = copy.copy(value)
    if getattr(module, "config", None) is replace_config[0]:
        clone.config = replace_config[1]
    _rebind_forward(clone, module)
    parent, attribute, keep = truncate
    children = module._modules.items()
    clone._modules = {}
    for name, child in children:
        if child is None:
            clone._modules[name] = None
        elif module is parent and name == attribute:
            clone._modules[name] = nn.ModuleList(
                [_shallow_clone(layer, memo, replace_config, truncate) for layer in list(child)[:keep]]
            )
        else:
            clone._modules[name] = _shallow_clone(child, memo, replace_config, truncate)
    return clone


def truncated_config(config: PretrainedConfig, num_layers: int) -> PretrainedConfig:
    """A copy of `config` with `num_layers` decoder layers (per-layer lists such as `layer_types` cut to match)."""
    truncated = copy.deepcopy(config)
    text_config = truncated.get_text_config() if hasattr(truncated, "get_text_config") else truncated
    text_config.num_hidden_layers = num_layers
    layer_types = getattr(text_config, "layer_types", None)
    if isinstance(layer_types, list):
        text_config.layer_types = layer_types[:num_layers]
    return truncated


def early_exit_view(model: PreTrainedModel, num_layers: int) -> PreTrainedModel:
    """Build the ULD assistant's early-exit view of `model`.

    Args:
        model ([`~transformers.PreTrainedModel`]):
            A causal LM (the unlearning target).
        num_layers (`int`):
            The number K of leading decoder layers the view keeps.

    Returns:
        A model of the same class whose forward runs the embeddings, decoder layers `0..K-1`, the final norm and the
        LM head. Every parameter and buffer *is* the target's (same tensor objects, no copy); the module objects are
        new, so adapters injected into the view never reach the target's forward. Its config is a copy with
        `num_hidden_layers=K`.
    """
    num_layers = resolve_assistant_num_layers(num_layers, model.config)
    parent, attribute = find_decoder_layers(model)
    view_config = truncated_config(model.config, num_layers)
    return _shallow_clone(model, {}, (model.config, view_config), (parent, attribute, num_layers))


def decoder_layer_linear_names(model: nn.Module) -> list[str]:
    """Short names of the linear layers inside decoder layer 0 (the candidates for LoRA).

    GPT-2-style `Conv1D` layers count too: PEFT adapts them as linear layers with transposed weights.
    """
    parent, attribute = find_decoder_layers(model)
    first_layer = getattr(parent, attribute)[0]
    names: list[str] = []
    for name, module in first_layer.named_modules():
        weight = getattr(module, "weight", None)
        is_linear = isinstance(module, (nn.Linear, Conv1D)) or type(module).__name__ in ("Linear4bit", "Linear8bitLt")
        if is_linear and isinstance(weight, torch.Tensor) and weight.ndim == 2:
            short_name = name.rsplit(".", 1)[-1]
            if short_name not in names:
                names.append(short_name)
    return names


def uses_conv1d(model: nn.Module) -> bool:
    """Whether the model's projections are GPT-2-style `Conv1D` layers (LoRA then needs `fan_in_fan_out=True`)."""
    return any(isinstance(module, Conv1D) for module in model.modules())


def projection_lora_config(
    model: nn.Module, *, r: int, lora_alpha: int, layers_to_transform: list[int] | None = None
) -> LoraConfig:
    """LoRA with dropout 0.05 on the attention and MLP projections the model has (GPT-2's `Conv1D` included)."""
    available = decoder_layer_linear_names(model)
    targets = [name for name in DEFAULT_LORA_TARGET_MODULES if name in available] or available
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=0.05,
        target_modules=targets,
        fan_in_fan_out=uses_conv1d(model),
        layers_to_transform=layers_to_transform,
        task_type="CAUSAL_LM",
        bias="none",
    )


def default_assistant_lora_config(model: nn.Module, num_layers: int) -> LoraConfig:
    """The ULD paper's LoRA: r=32, alpha=32, dropout 0.05 on the attention and MLP projections of layers `0..K-1`."""
    return projection_lora_config(model, r=32, lora_alpha=32, layers_to_transform=list(range(num_layers)))


def restrict_lora_config_to_assistant(lora_config: LoraConfig, model: nn.Module, num_layers: int) -> LoraConfig:
    """Copy a user's `LoraConfig` so it adapts exactly the assistant's layers `0..K-1` with named target modules.

    PEFT rejects `layers_to_transform` together with a string target such as `"all-linear"`, so string targets are
    expanded to the linear layers of a decoder block.
    """
    if not isinstance(lora_config, LoraConfig):
        raise TypeError(
            f"peft_config must be a peft.LoraConfig for ULD (the assistant is a LoRA adapter), got "
            f"{type(lora_config).__name__}."
        )
    config = copy.deepcopy(lora_config)
    if isinstance(config.target_modules, str) or config.target_modules is None:
        config.target_modules = decoder_layer_linear_names(model)
    layers = _as_layer_list(config.layers_to_transform)
    if layers is None:
        layers = list(range(num_layers))
    out_of_range = [layer for layer in layers if layer < 0 or layer >= num_layers]
    if out_of_range:
        raise ValueError(
            f"peft_config.layers_to_transform={layers} names layers {out_of_range} outside the assistant's layers "
            f"0..{num_layers - 1}; leave it unset to adapt all of them."
        )
    config.layers_to_transform = layers
    if config.task_type is None:
        config.task_type = "CAUSAL_LM"
    return config


def _as_layer_list(layers: int | Iterable[int] | None) -> list[int] | None:
    if layers is None:
        return None
    if isinstance(layers, int):
        return [layers]
    return list(layers)

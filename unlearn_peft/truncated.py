"""Loading only what ULD's assistant runs: the embeddings, decoder layers `0..K-1`, the final norm and the LM head.

ULD never runs the target's layers `K..N-1` while training, so [`UnlearnTrainer`] given a model id or path loads a
model built from the checkpoint's config with `num_hidden_layers=K`: the later layers are never materialised. From
the Hub only the safetensors shards holding the needed tensors are downloaded (read from the index's
`weight_map`); a single-file checkpoint is read as it is. The loaded model is marked, its config remembers the full
one (for the sidecar's fingerprint and base id), and it refuses to be saved or pushed: it is not the base model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors
import torch
import transformers.modeling_utils
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME

from .assistant import num_decoder_layers, truncated_config

# `model.layers.12.mlp…`, `transformer.h.3.attn…`, `gpt_neox.layers.0…`: the index of a decoder layer's tensor.
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")
# What `from_pretrained` reads besides the weights: configs, tokenizer files, chat templates.
NON_WEIGHT_PATTERNS = ["*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
TRUNCATED_FROM_ATTRIBUTE = "_unlearn_peft_full_config"

logger = logging.getLogger(__name__)


class TruncatedModelSaveError(RuntimeError):
    """Raised when a model loaded with only its first K layers is saved or pushed as if it were the base."""


def is_needed(tensor_name: str, num_layers: int) -> bool:
    """Whether the assistant with `num_layers` layers reads this checkpoint tensor (every non-layer tensor counts)."""
    match = LAYER_INDEX.search(tensor_name)
    return match is None or int(match.group(1)) < num_layers


def full_config(model: PreTrainedModel) -> PretrainedConfig:
    """The config of the checkpoint `model` came from: the full one for a truncated load, else its own."""
    return getattr(model, TRUNCATED_FROM_ATTRIBUTE, None) or model.config


def is_truncated(model: PreTrainedModel) -> bool:
    return getattr(model, TRUNCATED_FROM_ATTRIBUTE, None) is not None


def load_assistant_layers(
    model_id: str, num_layers: int, config: PretrainedConfig, **model_init_kwargs: Any
) -> PreTrainedModel:
    """Load the first `num_layers` decoder layers of `model_id` (a Hub id or a local directory) with the rest of what
    the assistant runs; `config` is the checkpoint's full config, `model_init_kwargs` go to `from_pretrained`.
    """
    revision, token = model_init_kwargs.get("revision"), model_init_kwargs.get("token")
    source, commit = Path(model_id), None
    if not source.is_dir():
        source = Path(_download_needed_files(model_id, num_layers, revision=revision, token=token))
        commit = source.name  # the snapshot directory is named after the commit it holds
    kwargs = {key: value for key, value in model_init_kwargs.items() if key not in ("revision", "token")}
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ValueError(
            f"{model_id} has a {type(config).__name__}, which transformers does not map to a causal LM class; "
            "load the model yourself and pass it to UnlearnTrainer, or set load_assistant_layers_only=False."
        )
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    # Tensors of layers K..N-1 that share a file with needed ones are read past, by design: not "unexpected".
    later_layers = "|".join(str(index) for index in range(num_layers, num_decoder_layers(config)))
    declared = model_class._keys_to_ignore_on_load_unexpected
    model_class._keys_to_ignore_on_load_unexpected = [
        *(declared or []),
        rf"(?:^|\.)(?:layers|h|blocks)\.(?:{later_layers})\.",
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="unlearn-peft-truncated-") as staging:
            directory = _with_needed_shards(source, num_layers, Path(staging))
            converted = kwargs.get("quantization_config") is not None or _converts_dtype(directory, kwargs)
            with shards_read_without_mmap() if converted else contextlib.nullcontext():
                model = model_class.from_pretrained(
                    str(directory), config=truncated_config(config, num_layers), use_safetensors=True, **kwargs
                )
    finally:
        model_class._keys_to_ignore_on_load_unexpected = declared
    model.config._name_or_path = model.name_or_path = model_id
    model.config._commit_hash = commit or getattr(config, "_commit_hash", None)
    setattr(model, TRUNCATED_FROM_ATTRIBUTE, config)
    _refuse_saving(model, num_layers, config)
    return model


SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def _converts_dtype(directory: Path, model_init_kwargs: dict[str, Any]) -> bool:
    """Whether loading converts the floating-point tensors of the checkpoint in `directory` to another dtype.

    Tensors loaded in their stored dtype are the memory-mapped pages themselves, so reading them instead saves nothing
    (it cost 0.15 GiB more on the 7B-shaped benchmark); "auto" or no dtype keeps the stored one.
    """
    requested = model_init_kwargs.get("dtype", "auto")
    if requested in (None, "auto"):
        return False
    for shard in sorted(directory.glob("*.safetensors")):
        with safetensors.safe_open(shard, framework="pt") as checkpoint:
            for name in checkpoint.keys():  # noqa: SIM118 (a safe_open handle has keys(), not __iter__)
                stored = SAFETENSORS_DTYPES.get(checkpoint.get_slice(name).get_dtype())
                if stored is not None:
                    return stored != requested
    return False


@contextlib.contextmanager
def shards_read_without_mmap() -> Iterator[None]:
    """Make `from_pretrained` read each checkpoint tensor with `pread` instead of a memory map, while in this block.

    transformers opens every shard memory-mapped before it converts the first tensor and unmaps them only after the
    last one, so each needed page of the checkpoint stays resident until the load ends: for TinyLlama-1.1B's first 5
    layers, 0.77 GiB of bf16 pages on top of the 1.59 GiB of float32 weights (`benchmarks/truncated_load.py`).
    With `pread` each tensor is copied out as it is converted and freed with its copy. The weights loaded are the
    same bytes either way. Not thread-safe: it swaps the `safe_open` that `transformers.modeling_utils` calls.
    """
    opener = getattr(transformers.modeling_utils, "safe_open", None)
    if opener is not safetensors.safe_open:  # transformers reads checkpoints some other way: leave it as it is
        logger.info("transformers does not open checkpoints with safetensors.safe_open here; loading memory-mapped.")
        yield
        return

    def open_with_pread(filename: Any, framework: str, device: Any = "cpu", **kwargs: Any) -> Any:
        return safetensors.safe_open(filename, framework=framework, device=device, backend="pread")

    transformers.modeling_utils.safe_open = open_with_pread
    try:
        yield
    finally:
        transformers.modeling_utils.safe_open = opener


def _download_needed_files(repo_id: str, num_layers: int, *, revision: str | None, token: Any) -> str:
    """Snapshot of `repo_id` with the non-weight files and only the shards that hold needed tensors."""
    try:
        index_path = hf_hub_download(repo_id, SAFE_WEIGHTS_INDEX_NAME, revision=revision, token=token)
    except EntryNotFoundError:  # a single-file checkpoint: everything is in model.safetensors
        weights = ["model.safetensors"]
    else:
        weight_map = json.loads(Path(index_path).read_text(encoding="utf-8"))["weight_map"]
        weights = sorted({shard for name, shard in weight_map.items() if is_needed(name, num_layers)})
    return snapshot_download(repo_id, revision=revision, token=token, allow_patterns=[*NON_WEIGHT_PATTERNS, *weights])


def _with_needed_shards(source: Path, num_layers: int, staging: Path) -> Path:
    """`source` itself for a single-file checkpoint; for a sharded one, a directory of links to its files with an
    index that lists only the needed tensors (so `from_pretrained` neither opens nor expects the other shards)."""
    index_path = source / SAFE_WEIGHTS_INDEX_NAME
    if not index_path.is_file():
        return source
    index = json.loads(index_path.read_text(encoding="utf-8"))
    weight_map = {name: shard for name, shard in index["weight_map"].items() if is_needed(name, num_layers)}
    needed_shards = set(weight_map.values())
    for entry in source.iterdir():
        if entry.name != SAFE_WEIGHTS_INDEX_NAME and (
            not entry.name.endswith(".safetensors") or entry.name in needed_shards
        ):
            os.symlink(entry.resolve(), staging / entry.name)
    index["weight_map"] = weight_map
    (staging / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index), encoding="utf-8")
    return staging


def _refuse_saving(model: PreTrainedModel, num_layers: int, config: PretrainedConfig) -> None:
    message = (
        f"This model holds only the first {num_layers} of {num_decoder_layers(config)} decoder layers (ULD loads no "
        "more for training); it is not the base model and cannot be saved or pushed. Save the adapter with "
        "trainer.save_model(); load the full base with ULDModel.from_pretrained."
    )

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise TruncatedModelSaveError(message)

    model.save_pretrained = refuse
    model.push_to_hub = refuse


def load_config(model_id: str, model_init_kwargs: dict[str, Any]) -> PretrainedConfig:
    """The checkpoint's full config (never remote code)."""
    keys = ("revision", "token", "cache_dir", "local_files_only")
    return AutoConfig.from_pretrained(
        model_id, **{key: model_init_kwargs[key] for key in keys if key in model_init_kwargs}
    )

"""Hub access for unlearning adapters: resolve a local directory or download a repository (safetensors only)."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import snapshot_download

from .sidecar import SIDECAR_NAME

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAMES = ("adapter_model.bin", "pytorch_model.bin")
# Only these are fetched: JSON configs, safetensors weights and the card. Pickle files are never downloaded.
ADAPTER_ALLOW_PATTERNS = ["*.json", "*.safetensors", "README.md"]


def resolve_adapter_dir(
    path_or_repo_id: str | os.PathLike[str],
    revision: str | None = None,
    token: str | None = None,
) -> Path:
    """Return a local directory holding the adapter: `path_or_repo_id` itself, or a Hub snapshot of it.

    Raises:
        FileNotFoundError: the directory has no `adapter_config.json` or no sidecar.
        ValueError: the adapter weights are only available as pickle (`.bin`), which is never loaded.
    """
    path = Path(path_or_repo_id)
    if path.is_dir():
        directory = path
        pickle_only = not (directory / ADAPTER_WEIGHTS_NAME).is_file() and any(
            (directory / name).is_file() for name in PICKLE_WEIGHTS_NAMES
        )
    else:
        directory = Path(
            snapshot_download(
                str(path_or_repo_id), revision=revision, token=token, allow_patterns=ADAPTER_ALLOW_PATTERNS
            )
        )
        pickle_only = False
        if not (directory / ADAPTER_WEIGHTS_NAME).is_file():
            from huggingface_hub import HfApi

            files = HfApi(token=token).list_repo_files(str(path_or_repo_id), revision=revision)
            pickle_only = any(name in PICKLE_WEIGHTS_NAMES for name in files)
    if pickle_only:
        raise ValueError(
            f"{path_or_repo_id} holds its adapter weights only as pickle (.bin). unlearn-peft loads only "
            f"safetensors; convert them with `safetensors.torch.save_file` into {ADAPTER_WEIGHTS_NAME}."
        )
    for required in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, SIDECAR_NAME):
        if not (directory / required).is_file():
            raise FileNotFoundError(
                f"{path_or_repo_id} has no {required}; an unlearn-peft adapter needs {ADAPTER_CONFIG_NAME}, "
                f"{ADAPTER_WEIGHTS_NAME} and {SIDECAR_NAME} (written by UnlearnTrainer.save_model)."
            )
    return directory

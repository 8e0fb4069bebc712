"""Hub access for unlearning adapters: resolve a local directory or download a repository (safetensors only), and
publish an adapter with its sidecar and model card."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError
from peft.utils import CONFIG_NAME as ADAPTER_CONFIG_NAME
from peft.utils import SAFETENSORS_WEIGHTS_NAME as ADAPTER_WEIGHTS_NAME
from peft.utils import WEIGHTS_NAME as ADAPTER_PICKLE_WEIGHTS_NAME

from .model_card import is_hub_id, load_evaluation, published_base_model, render_model_card
from .sidecar import LEGACY_SIDECAR_NAME, SIDECAR_NAME, UnlearnSidecar, find_sidecar

logger = logging.getLogger(__name__)

PICKLE_WEIGHTS_NAMES = (ADAPTER_PICKLE_WEIGHTS_NAME, "pytorch_model.bin")
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
            files = HfApi(token=token).list_repo_files(str(path_or_repo_id), revision=revision)
            pickle_only = any(name in PICKLE_WEIGHTS_NAMES for name in files)
    if pickle_only:
        raise ValueError(
            f"{path_or_repo_id} holds its adapter weights only as pickle (.bin). unlearn-peft loads only "
            f"safetensors; convert them with `safetensors.torch.save_file` into {ADAPTER_WEIGHTS_NAME}."
        )
    present = {name for name in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME) if (directory / name).is_file()}
    if find_sidecar(directory) is not None:
        present.add(SIDECAR_NAME)
    for required in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, SIDECAR_NAME):
        if required not in present:
            legacy = f" (nor the legacy {LEGACY_SIDECAR_NAME})" if required == SIDECAR_NAME else ""
            raise FileNotFoundError(
                f"{path_or_repo_id} has no {required}{legacy}; an unlearn-peft adapter needs {ADAPTER_CONFIG_NAME}, "
                f"{ADAPTER_WEIGHTS_NAME} and {SIDECAR_NAME} (written by UnlearnTrainer.save_model)."
            )
    return directory


EVALUATION_NAME = "eval_results.json"
CARD_NAME = "README.md"


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's connection errors (huggingface_hub's client library, whichever it is)."""
    errors: list[type[Exception]] = []
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        error = getattr(module, "TransportError", None) or getattr(module, "ConnectionError", None)
        if isinstance(error, type):
            errors.append(error)
    return tuple(errors)


class HubPushError(RuntimeError):
    """An upload to the Hub failed; nothing local was changed."""


def push_adapter(
    adapter_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    evaluation: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload unlearning adapter with unlearn-peft",
) -> str:
    """Upload an adapter directory to the Hub: PEFT files, sidecar, the rendered model card and the evaluation.

    Only `adapter_config.json`, `adapter_model.safetensors`, `unlearn_sidecar.json`, `README.md` (rendered from
    `hub_cards/`, never PEFT's or TRL's generic card) and, when given, `eval_results.json` are uploaded, from a
    staging copy: `adapter_dir` itself is never modified.

    Args:
        adapter_dir (`str` or `os.PathLike`):
            Local directory written by `UnlearnTrainer.save_model` or `ULDModel.save_pretrained`.
        repo_id (`str`):
            Target repository (`user/name`); created if it does not exist.
        evaluation (`str`, `os.PathLike` or `dict`, *optional*):
            An evaluation JSON written by `unlearn-peft eval`: uploaded and shown in the card (`model-index`).
        base_model (`str`, *optional*):
            Hub id of the base model. Use it when the adapter was trained on a local copy: it is written into the
            uploaded sidecar (so `ULDModel.from_pretrained(repo_id)` loads the base from the Hub) and the card.
            An adapter trained on the embedded offline SmolLM2 records its Hub id without being told.
        datasets (`Sequence[str]`, *optional*):
            Hub ids of the forget and retain datasets, for the card's metadata.
        private (`bool`, *optional*):
            Create the repository as private.
        token (`str`, *optional*):
            Hub token; defaults to the logged-in one.
        revision (`str`, *optional*):
            Branch to commit to.
        commit_message (`str`):
            The commit message.

    Returns:
        `str`: the URL of the commit.

    Raises:
        HubPushError: the Hub refused the token or answered with an error (the message says which).
    """
    source = Path(adapter_dir)
    if not source.is_dir():
        raise FileNotFoundError(f"{adapter_dir} is not a directory; pass the adapter directory written by save_model.")
    directory = resolve_adapter_dir(source)
    results = load_evaluation(evaluation)
    with tempfile.TemporaryDirectory(prefix="unlearn-peft-push-") as staging_name:
        staging = Path(staging_name)
        for name in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME):
            shutil.copy2(directory / name, staging / name)
        sidecar = UnlearnSidecar.load(directory)
        if base_model is None:  # the embedded offline model publishes under its Hub id
            base_model = published_base_model(sidecar.base_model_name_or_path)[0]
        if base_model is not None and base_model != sidecar.base_model_name_or_path:
            sidecar.base_model_name_or_path, sidecar.base_model_revision = base_model, None
        if not is_hub_id(sidecar.base_model_name_or_path):
            logger.warning(
                "The adapter records its base model as %r, which is not a Hub id: loading it from the Hub will need "
                "base_model=... Pass base_model='org/name' to record the Hub id.",
                sidecar.base_model_name_or_path,
            )
        sidecar.save(staging)
        if results is not None:
            (staging / EVALUATION_NAME).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        card = render_model_card(staging, repo_id=repo_id, evaluation=results, datasets=datasets)
        card.save(staging / CARD_NAME)
        api = HfApi(token=token)
        try:
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_url.repo_id,
                folder_path=staging,
                commit_message=commit_message,
                revision=revision,
                repo_type="model",
            )
        except HfHubHTTPError as error:
            status = error.response.status_code if getattr(error, "response", None) is not None else None
            if status in (401, 403):
                reason = "the Hub refused the token: log in with `hf auth login`, set HF_TOKEN, or pass token="
            else:
                reason = f"the Hub answered HTTP {status}: {str(error).splitlines()[0]}"
            raise HubPushError(
                f"Pushing {adapter_dir} to {repo_id} failed: {reason}. Nothing local was changed."
            ) from error
        except (OSError, *_transport_errors()) as error:
            raise HubPushError(
                f"Pushing {adapter_dir} to {repo_id} failed: {error}. Nothing local was changed."
            ) from error
    return str(commit.commit_url)

"""The adapter sidecar `unlearn_sidecar.json`: what PEFT's `adapter_config.json` does not record.

It sits next to the standard PEFT files and records the unlearning method, the ULD inference settings, the base
model (id, revision) and a fingerprint of the base's config, so that a loader can refuse a mismatched base.
Adapters saved before the file had its own name (`unlearn_config.json`, which read like an `UnlearnConfig`) still
load; saving or publishing writes the new name.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel

from .assistant import num_decoder_layers
from .logit_difference import DEFAULT_MIN_TOKENS_TO_KEEP
from .truncated import full_config

logger = logging.getLogger(__name__)

SIDECAR_NAME = "unlearn_sidecar.json"
LEGACY_SIDECAR_NAME = "unlearn_config.json"
"""The sidecar's earlier name: read when a directory has no `SIDECAR_NAME`, never written."""
# 2: adds `min_tokens_to_keep`; a version-1 ULD sidecar loads with DEFAULT_MIN_TOKENS_TO_KEEP.
# 3: adds `weight_by_assistant_mass`; earlier ULD sidecars load with False (their behaviour). A reader of version 2
#    would ignore the field and compute other logits, so it must refuse these sidecars.
# 4: adds `one_sided_subtraction`; earlier ULD sidecars load with False (their behaviour), and for the same reason a
#    reader of version 3 refuses these.
# 5: adds `subtraction_margin`; earlier ULD sidecars load with 0.0 (their behaviour); a reader of version 4 refuses.
# 6: adds `exempt_token_ids`; earlier ULD sidecars load with [] (their behaviour); a reader of version 5 refuses.
SIDECAR_SCHEMA_VERSION = 6


def base_model_fingerprint(model: PreTrainedModel) -> dict[str, Any]:
    """What an adapter depends on in its base: architecture, layer count, hidden size, vocabulary size.

    For a model loaded with only the assistant's layers, the checkpoint's full config is described.
    """
    config = full_config(model)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {
        "model_type": getattr(config, "model_type", None),
        "architecture": type(model).__name__,
        "num_hidden_layers": num_decoder_layers(config),
        "hidden_size": getattr(text_config, "hidden_size", None),
        "vocab_size": getattr(text_config, "vocab_size", None),
    }


def base_model_reference(config: PretrainedConfig) -> tuple[str | None, str | None]:
    """`(name_or_path, revision)` of the checkpoint a model was loaded from, when transformers recorded them."""
    name_or_path = getattr(config, "_name_or_path", None) or None
    revision = getattr(config, "_commit_hash", None) or None
    return name_or_path, revision


@dataclass
class UnlearnSidecar:
    """Contents of `unlearn_sidecar.json`."""

    method: str
    base_model_name_or_path: str | None
    base_model_revision: str | None
    base_model_fingerprint: dict[str, Any]
    library_version: str
    assistant_num_layers: int | None = None
    assistant_weight: float | None = None
    plausibility_threshold: float | None = None
    min_tokens_to_keep: int | None = None
    weight_by_assistant_mass: bool | None = None
    one_sided_subtraction: bool | None = None
    subtraction_margin: float | None = None
    exempt_token_ids: list[int] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SIDECAR_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | os.PathLike[str]) -> str:
        """Write the sidecar into `directory` and return its path."""
        path = os.path.join(directory, SIDECAR_NAME)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = SIDECAR_NAME) -> UnlearnSidecar:
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SIDECAR_SCHEMA_VERSION:
            raise ValueError(
                f"{source}: schema_version={version!r} is not supported by this version of unlearn-peft (reads up to "
                f"{SIDECAR_SCHEMA_VERSION}). Upgrade with `pip install -U unlearn-peft`."
            )
        missing = [name for name in ("method", "base_model_fingerprint", "library_version") if name not in data]
        if missing:
            raise ValueError(f"{source}: missing required keys {missing}; the sidecar is incomplete or corrupted.")
        known = set(cls.__dataclass_fields__)
        sidecar = cls(**{key: value for key, value in data.items() if key in known})
        if sidecar.method == "uld" and sidecar.min_tokens_to_keep is None:
            # Adapters written before the floor existed get today's default: a one-token set disabled ULD where a
            # target had memorised its answer, which was a defect, not a setting to preserve.
            sidecar.min_tokens_to_keep = DEFAULT_MIN_TOKENS_TO_KEEP
        if sidecar.method == "uld" and sidecar.weight_by_assistant_mass is None:
            sidecar.weight_by_assistant_mass = False
        if sidecar.method == "uld" and sidecar.one_sided_subtraction is None:
            sidecar.one_sided_subtraction = False
        if sidecar.method == "uld" and sidecar.subtraction_margin is None:
            sidecar.subtraction_margin = 0.0
        if sidecar.method == "uld" and sidecar.exempt_token_ids is None:
            sidecar.exempt_token_ids = []
        return sidecar

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> UnlearnSidecar:
        """Read a sidecar file (or the sidecar inside a directory, under its current or its legacy name)."""
        if os.path.isdir(path):
            found = find_sidecar(path)
            if found is None:
                raise FileNotFoundError(
                    f"{path} has no {SIDECAR_NAME} (nor the legacy {LEGACY_SIDECAR_NAME}); it is written next to "
                    "the PEFT files by UnlearnTrainer.save_model."
                )
            if os.path.basename(found) == LEGACY_SIDECAR_NAME:
                logger.info(
                    "%s holds the sidecar under its legacy name %s; saving or pushing the adapter again writes %s.",
                    path,
                    LEGACY_SIDECAR_NAME,
                    SIDECAR_NAME,
                )
            path = found
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); the sidecar is corrupted.") from error
        return cls.from_dict(data, source=path)


def find_sidecar(directory: str | os.PathLike[str]) -> str | None:
    """The sidecar's path in `directory`: `SIDECAR_NAME`, else `LEGACY_SIDECAR_NAME`; `None` if neither."""
    for name in (SIDECAR_NAME, LEGACY_SIDECAR_NAME):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None

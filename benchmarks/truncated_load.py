"""ULD training memory, full load vs only the assistant's layers, side by side, on TinyLlama-1.1B shapes and SmolLM2.

A random checkpoint with TinyLlama-1.1B's shapes (22 layers, hidden 2048, MLP 5632, 4 KV heads, vocab 49152 for the
offline SmolLM2 tokenizer) is written once in bf16, as a Hub checkpoint would be. Child processes then run
`UnlearnTrainer("<checkpoint>", method="uld", assistant_num_layers=5)` for 3 optimiser steps from the same
checkpoint: one with `load_assistant_layers_only=False` (the full load), one with the default truncated load, and
one with the truncated load and `activation_checkpointing=True`. Each reports its peak RSS while loading and over the
whole run, minus its RSS before loading. Every loaded tensor is converted to float32 (as a GPU load copies it to the
device), so untouched layers cannot hide in a memory map. Goal (issue #17): the truncated run's peak minus its RSS
before loading ≤ 0.5× the full model's loaded weights.

SmolLM2-135M-Instruct (30 layers, K = 7, the default quarter) is measured the same way from a bf16 copy of the
offline checkpoint in 100 MB shards (its own fp32 file would be memory-mapped, hiding untouched layers). Its tied
embeddings are a fifth of the model and its activations are large next to its weights, so no goal is set for it.

The three runs are made twice: with glibc's allocator as it is, and with its mmap threshold fixed at 128 KiB
(`MALLOC_MMAP_THRESHOLD_=131072`). glibc raises that threshold each time a large block is freed; the training step's
large temporary tensors then come from the heap and stay in the RSS after they are freed. On a GPU those tensors live
in device memory, so the second reading is the closer one to what a GPU run asks of the host.

    python benchmarks/truncated_load.py          # about 3 minutes and 10 GB of RAM on 2 CPU cores; RESULTS.md
    python benchmarks/truncated_load.py --quick  # a tiny Llama, seconds (CI); no RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unlearn_peft.embedded import cache_dir

try:
    from ._common import append_results, commit, markdown_table, memory_status, tofu_question_answers
except ImportError:  # run as a script
    from _common import append_results, commit, markdown_table, memory_status, tofu_question_answers

TINYLLAMA_K = 5
SMOLLM2_K = 7  # a quarter of 30 layers, the library's default
GIB = 1024**3
# (child mode, row label): the full load, then only the assistant's layers, without and with activation checkpointing.
MODES = {
    "full": "full load",
    "truncated": "assistant's layers only",
    "truncated+checkpointing": "assistant's layers only, activation_checkpointing",
}


def tinyllama_config(quick: bool) -> LlamaConfig:
    if quick:
        return LlamaConfig(
            vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=22, pad_token_id=2
        )
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        tie_word_embeddings=False,
        pad_token_id=2,  # SmolLM2's, whose tokenizer the runs use
    )


def write_checkpoint(directory: Path, quick: bool) -> None:
    if (directory / "config.json").is_file():
        return
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(tinyllama_config(quick), dtype=torch.bfloat16)
    staging = directory.with_name(directory.name + ".partial")
    model.save_pretrained(staging, max_shard_size="500MB")
    staging.rename(directory)


def write_smollm2_checkpoint(directory: Path) -> None:
    """SmolLM2-135M-Instruct in bf16, sharded, as a Hub checkpoint of it would be."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from unlearn_peft.embedded import smollm2_checkpoint

    if (directory / "config.json").is_file():
        return
    staging = directory.with_name(directory.name + ".partial")
    AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.bfloat16).save_pretrained(
        staging, max_shard_size="100MB"
    )
    AutoTokenizer.from_pretrained(smollm2_checkpoint()).save_pretrained(staging)
    staging.rename(directory)


def uld_trainer(directory: str, mode: str, num_layers: int, output_dir: str, tokenizer, use_cpu: bool = True):
    """The measured run's `UnlearnTrainer` (3 steps, 2 + 2 TOFU rows ≤ 128 tokens, float32), shared with
    `gpu_check.py`'s CUDA version of this measurement; `mode` is a key of `MODES`."""
    from unlearn_peft import UnlearnConfig, UnlearnTrainer

    args = UnlearnConfig(
        output_dir=output_dir,
        assistant_num_layers=num_layers,
        load_assistant_layers_only=mode != "full",
        activation_checkpointing=mode == "truncated+checkpointing",
        max_steps=3,
        per_device_train_batch_size=2,
        max_length=128,
        use_cpu=use_cpu,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        stop_when_converged=False,
        model_init_kwargs={"dtype": "float32"},
    )
    return UnlearnTrainer(
        directory,
        args=args,
        forget_dataset=tofu_question_answers("forget01_perturbed.json", 8),
        retain_dataset=tofu_question_answers("retain_perturbed_head40.json", 8),
        processing_class=tokenizer,
    )


def child(directory: str, mode: str, num_layers: int) -> None:
    from transformers import AutoTokenizer

    from unlearn_peft.embedded import smollm2_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())

    rss_before = memory_status()["VmRSS"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = uld_trainer(directory, mode, num_layers, output_dir, tokenizer)
        loaded = trainer.target_model
        peak_after_loading = memory_status()["VmHWM"]
        trainer.train()
    print(
        "RESULT "
        + json.dumps(
            {
                "rss_before": rss_before,
                "peak": memory_status()["VmHWM"],
                "peak_after_loading": peak_after_loading,
                "layers": len(loaded.model.layers),
                "loaded_bytes": sum(p.numel() * p.element_size() for p in loaded.parameters()),
                "seconds": time.perf_counter() - started,
            }
        )
    )


# (label suffix, environment): glibc's allocator as it is, and with a fixed mmap threshold (see the docstring).
ALLOCATORS = {"": {}, ", fixed mmap threshold": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def run_child(directory: Path, mode: str, num_layers: int, environment: dict[str, str]) -> dict[str, float]:
    process = subprocess.run(
        [sys.executable, __file__, "--child", str(directory), mode, str(num_layers)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        env={**os.environ, **environment},
    )
    if process.returncode:
        raise SystemExit(f"the {mode} run failed (exit {process.returncode})")
    return json.loads(next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))[7:])


def measure(directory: Path, num_layers: int, target: str) -> tuple[str, dict[str, dict[str, float]]]:
    total_layers = json.loads((directory / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
    results = {
        label + suffix: run_child(directory, mode, num_layers, environment)
        for suffix, environment in ALLOCATORS.items()
        for mode, label in MODES.items()
    }
    full_weights = results["full load"]["loaded_bytes"]
    rows = []
    for name, result in results.items():
        grown = result["peak"] - result["rss_before"]
        rows.append(
            [
                name,
                f"{result['layers']} of {total_layers}",
                f"{result['loaded_bytes'] / GIB:.2f}",
                f"{(result['peak_after_loading'] - result['rss_before']) / GIB:.2f}",
                f"{grown / GIB:.2f}",
                f"{grown / full_weights:.2f}×",
                f"{result['seconds']:.0f}",
            ]
        )
    header = [
        f"{target}: ULD, K = {num_layers}, 3 steps, float32",
        "layers loaded",
        "loaded weights (GiB)",
        "peak while loading − RSS before (GiB)",
        "peak − RSS before loading (GiB)",
        "÷ full model's loaded weights",
        "load + 3 steps (s)",
    ]
    return markdown_table(header, rows), results


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="A tiny Llama with 22 layers; no RESULTS.md.")
    options = parser.parse_args()
    if options.quick:
        with tempfile.TemporaryDirectory() as workdir:
            directory = Path(workdir) / "tiny"
            write_checkpoint(directory, quick=True)
            table, results = measure(directory, TINYLLAMA_K, "tiny Llama")
        print(table)
        assert [result["layers"] for result in results.values()] == [22, TINYLLAMA_K, TINYLLAMA_K] * len(ALLOCATORS)
        return
    benchmarks = cache_dir() / "benchmarks"
    benchmarks.mkdir(parents=True, exist_ok=True)
    write_checkpoint(benchmarks / "tinyllama-1.1b-shape-bf16", quick=False)
    write_smollm2_checkpoint(benchmarks / "smollm2-135m-instruct-bf16")
    tinyllama, _ = measure(benchmarks / "tinyllama-1.1b-shape-bf16", TINYLLAMA_K, "TinyLlama-1.1B shapes")
    smollm2, _ = measure(benchmarks / "smollm2-135m-instruct-bf16", SMOLLM2_K, "SmolLM2-135M-Instruct")
    print(tinyllama, smollm2, sep="\n\n")
    append_results(
        "ULD training memory: full load vs only the assistant's layers (TinyLlama-1.1B shapes, SmolLM2-135M)",
        f"{tinyllama}\n\n{smollm2}",
        "TinyLlama: random weights, bf16 checkpoint in 500 MB shards; SmolLM2: its weights in bf16, 100 MB shards; "
        f"both loaded in float32. Commit {commit()}.",
    )


if __name__ == "__main__":
    main()

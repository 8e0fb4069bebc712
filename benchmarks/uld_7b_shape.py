"""One ULD training step on a Llama-2-7B-shaped target loaded with only the assistant's layers, on CPU: peak RSS.

Nothing is downloaded. A checkpoint with Llama-2-7B's shapes (hidden 4096, MLP 11008, 32 heads, vocabulary 32000,
32 layers in its config, bf16) is written once with random weights, holding only what a K = 8 assistant reads: the
embeddings, layers 0..7, the final norm and the LM head (the later layers are never read by `UnlearnTrainer`, so
they are not written: 13.5 GB of disk saved). Its tokenizer is SmolLM2's (the only one offline) cut to its first
32000 tokens and the BPE merges that make them, so the embeddings and head have Llama-2's size. A child process then
runs `UnlearnTrainer("<checkpoint>", method="uld", assistant_num_layers=8)` for one optimiser step (2 forget + 2
retain rows of TOFU) with the weights in `--dtype` and reports its peak RSS, three ways side by side: as is; with
activation checkpointing (one layer's activations kept instead of K); and with activation checkpointing and bf16
mixed precision, the 7B consumer recipe's settings (`activation_checkpointing: true`, `bf16: true`). The arithmetic
for the full model and for a Llama-3-70B shape in 4-bit is printed next to it. On a CPU without native bf16 matmuls
(some of this project's machines ran them below 1 GFLOP/s; one with AMX ran the bf16 step in 12 s) the bf16 step
takes hours: measure with `--dtype float32` there, which doubles the weights.

    python benchmarks/uld_7b_shape.py                   # bf16, for machines with fast bf16; appends to RESULTS.md
    python benchmarks/uld_7b_shape.py --dtype float32   # about 10 minutes and 12 GB of RAM on 2 CPU cores
    python benchmarks/uld_7b_shape.py --quick           # the same path on a tiny Llama, seconds (CI); no RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from unlearn_peft.assistant import truncated_config
from unlearn_peft.embedded import cache_dir, smollm2_checkpoint

try:
    from ._common import append_results, commit, markdown_table, memory_status, tofu_question_answers
except ImportError:  # run as a script
    from _common import append_results, commit, markdown_table, memory_status, tofu_question_answers

K = 8
VOCABULARY = 32000  # Llama-2's
GIB = 1024**3
# (child mode, column header): activation_checkpointing, then also bf16 mixed precision as the 7B recipe sets.
MODES = {
    "plain": "as is",
    "checkpointing": "activation_checkpointing",
    "checkpointing+bf16": "activation_checkpointing + bf16 (the 7B recipe)",
}


def llama2_7b_config(quick: bool = False) -> LlamaConfig:
    if quick:
        return LlamaConfig(
            vocab_size=VOCABULARY, hidden_size=64, intermediate_size=128, num_hidden_layers=32, num_attention_heads=4
        )
    return LlamaConfig(
        vocab_size=VOCABULARY,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )


def write_tokenizer(directory: Path, source: Path) -> None:
    """SmolLM2's tokenizer (the files in `source`) cut to its first `VOCABULARY` tokens.

    Its byte-level BPE numbers each merged token after the merge that makes it, so the first `VOCABULARY` tokens and
    the merges whose result is among them still tokenize any text (in somewhat more tokens)."""
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    model = tokenizer["model"]
    model["vocab"] = {token: index for token, index in model["vocab"].items() if index < VOCABULARY}
    model["merges"] = [merge for merge in model["merges"] if "".join(merge) in model["vocab"]]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (source / name).is_file():
            (directory / name).write_bytes((source / name).read_bytes())


def write_checkpoint(directory: Path, quick: bool = False, tokenizer_source: Path | None = None) -> None:
    """The tensors a K-layer assistant reads, random, bf16, and the tokenizer made from SmolLM2's in
    `tokenizer_source` (default: the embedded model's); `config.json` declares all 32 layers."""
    if (directory / "config.json").is_file():
        return
    config = llama2_7b_config(quick)
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(truncated_config(config, K), dtype=torch.bfloat16)
    staging = directory.with_name(directory.name + ".partial")
    model.save_pretrained(staging, max_shard_size="1GB")
    config.save_pretrained(staging)  # the full model's config: 32 layers
    write_tokenizer(staging, tokenizer_source or Path(smollm2_checkpoint()))
    staging.rename(directory)


def child(directory: str, dtype: str, mode: str) -> None:
    from unlearn_peft import UnlearnConfig, UnlearnTrainer

    tokenizer = AutoTokenizer.from_pretrained(directory)

    rss_before = memory_status()["VmRSS"]
    started = time.perf_counter()
    args = UnlearnConfig(
        output_dir=str(Path(directory).with_name("uld-7b-shape-run")),
        method="uld",
        assistant_num_layers=K,
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=128,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        stop_when_converged=False,
        model_init_kwargs={"dtype": dtype},
        activation_checkpointing=mode in ("checkpointing", "checkpointing+bf16"),
        bf16=mode == "checkpointing+bf16",
    )
    trainer = UnlearnTrainer(
        directory,
        args=args,
        forget_dataset=tofu_question_answers("forget01_perturbed.json", 2),
        retain_dataset=tofu_question_answers("retain_perturbed_head40.json", 2),
        processing_class=tokenizer,
    )
    loaded = time.perf_counter()
    trainer.train()
    print(
        "RESULT "
        + json.dumps(
            {
                "rss_before": rss_before,
                "peak": memory_status()["VmHWM"],
                "layers_loaded": len(trainer.target_model.model.layers),
                "parameters_loaded": sum(p.numel() for p in trainer.target_model.parameters()),
                "load_seconds": loaded - started,
                "step_seconds": time.perf_counter() - loaded,
            }
        )
    )


def arithmetic() -> list[list[str]]:
    """Weights in GiB of the full model and of the assistant's part: Llama-2-7B in bf16, Llama-3-70B in nf4."""

    def layer_parameters(hidden: int, intermediate: int, kv_dim: int) -> int:
        return 2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * intermediate + 2 * hidden

    llama2 = layer_parameters(4096, 11008, 4096)
    llama2_embeddings = 2 * 32000 * 4096  # input embeddings and an untied LM head
    llama3 = layer_parameters(8192, 28672, 1024)
    llama3_embeddings = 2 * 128256 * 8192
    nf4 = 0.5 + 4 / 64 / 8 + 4 / 256 / 64  # 4 bits, one 8-bit absmax per 64, double-quantised (QLoRA)
    lora_70b = 20 * 32 * (2 * (8192 + 8192) + 2 * (8192 + 1024) + 3 * (8192 + 28672))  # r·(in+out) per projection
    return [
        ["Llama-2-7B, bf16, all 32 layers", gib((32 * llama2 + llama2_embeddings) * 2)],
        [f"Llama-2-7B, bf16, embeddings + layers 0..{K - 1} + head", gib((K * llama2 + llama2_embeddings) * 2)],
        ["Llama-3-70B, nf4 layers + bf16 embeddings, all 80 layers", gib(80 * llama3 * nf4 + llama3_embeddings * 2)],
        ["Llama-3-70B, nf4 layers 0..19 + bf16 embeddings and head", gib(20 * llama3 * nf4 + llama3_embeddings * 2)],
        ["Llama-3-70B, LoRA r=32 on layers 0..19: fp32 weights, grads, Adam", gib(lora_70b * 16)],
    ]


def gib(size: float) -> str:
    return f"{size / GIB:.1f}"


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="A tiny Llama with the same layer count; no RESULTS.md.")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        help="dtype of the loaded weights (float32 where the CPU has no fast bf16 matmuls: 2x the weights' memory).",
    )
    options = parser.parse_args()
    if options.quick:
        with tempfile.TemporaryDirectory() as workdir:
            directory = Path(workdir) / "tiny"
            write_checkpoint(directory, quick=True)
            table, _ = measure(directory, options.dtype)
        print(table)
        return
    directory = cache_dir() / "benchmarks" / f"llama2-7b-shape-first{K}-bf16-vocabulary{VOCABULARY}"
    directory.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(directory)
    table, weights = measure(directory, options.dtype)
    print(table)
    append_results(
        f"ULD on a Llama-2-7B-shaped target, only the assistant's layers loaded, {options.dtype}",
        table,
        f"SmolLM2's tokenizer cut to Llama-2's 32000 tokens. A 24 GiB GPU holds the 70B assistant's "
        f"{weights[3][1]} GiB of weights and {weights[4][1]} GiB of LoRA training state, leaving the rest for "
        f"activations; the whole 70B model in 4-bit ({weights[2][1]} GiB) does not fit. Commit {commit()}.",
    )


def run_child(directory: Path, dtype: str, mode: str) -> dict:
    """One training step in a fresh process (so its peak RSS is its own); the child's RESULT record."""
    process = subprocess.run(
        [sys.executable, __file__, "--child", str(directory), dtype, mode],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if process.returncode:
        raise SystemExit(f"the training step ({mode}) failed (exit {process.returncode})")
    return json.loads(next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))[7:])


def measure(directory: Path, dtype: str) -> tuple[str, list[list[str]]]:
    """One step without and one with activation checkpointing, each in a child; the tables and arithmetic rows."""
    results = [run_child(directory, dtype, mode) for mode in MODES]

    def row(label: str, value) -> list[str]:
        return [label, *(value(result) for result in results)]

    rows = [
        row("peak RSS of the process (GiB)", lambda r: f"{r['peak'] / GIB:.2f}"),
        row("peak RSS minus RSS before loading (GiB)", lambda r: f"{(r['peak'] - r['rss_before']) / GIB:.2f}"),
        row("decoder layers loaded", lambda r: f"{r['layers_loaded']} of 32"),
        row("parameters loaded", lambda r: f"{r['parameters_loaded'] / 1e9:.2f} B"),
        row("load / one step (s)", lambda r: f"{r['load_seconds']:.0f} / {r['step_seconds']:.0f}"),
    ]
    header = [f"ULD, K = 8, one optimiser step, CPU, weights in {dtype}", *MODES.values()]
    table = markdown_table(header, rows)
    weights = arithmetic()
    table += "\n\n" + markdown_table(["weights (arithmetic)", "GiB"], weights)
    return table, weights


if __name__ == "__main__":
    main()

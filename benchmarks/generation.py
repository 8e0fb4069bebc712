"""Generation speed: the base model vs ULDModel (merged, shared-weight) vs an uncached re-computation.

The uncached row re-runs both stacks over the whole sequence at every step, as the ULD reference code does.
By default it uses SmolLM2-135M-Instruct (the offline wheel) and a ULD adapter trained for a few steps (speed does
not depend on how well it is trained); `--quick` uses a tiny random Llama, for CI.

    python benchmarks/generation.py                # SmolLM2-135M, batch 1 and 8, 128 new tokens
    python benchmarks/generation.py --device cuda  # bfloat16 on a GPU (--dtype float32 to override)
    python benchmarks/generation.py --quick        # seconds; does not write RESULTS.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.testing import tiny_random_llama

try:
    from ._common import append_results, markdown_table
except ImportError:  # run as a script
    from _common import append_results, markdown_table

PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain photosynthesis in simple words.",
    "Who wrote Pride and Prejudice?",
    "List three uses of copper.",
    "What does a compiler do?",
    "Describe the water cycle.",
    "Why is the sky blue?",
]


def build_models(quick: bool, workdir: Path, device: str, dtype: torch.dtype):
    if quick:
        tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
        tiny_random_llama(tokenizer).save_pretrained(workdir / "base")
        tokenizer.save_pretrained(workdir / "base")
        base_path = workdir / "base"
    else:
        base_path = smollm2_checkpoint()
        tokenizer = AutoTokenizer.from_pretrained(base_path)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).to(device).eval()
    args = UnlearnConfig(
        output_dir=str(workdir / "train"),
        max_steps=2,
        per_device_train_batch_size=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
    )
    rows = [{"question": p, "answer": "I am not sure."} for p in PROMPTS]
    trainer = UnlearnTrainer(
        AutoModelForCausalLM.from_pretrained(base_path),
        args=args,
        forget_dataset=rows[:4],
        retain_dataset=rows[4:],
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(workdir / "adapter"))
    merged = ULDModel.from_pretrained(workdir / "adapter", base_model=base).to(device)
    shared = ULDModel.from_pretrained(workdir / "adapter", base_model=base, merge_assistant=False).to(device)
    return tokenizer, base, merged, shared


def tokens_per_second(model, inputs, new_tokens: int, use_cache: bool, repeats: int) -> float:
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache)
    model.generate(**inputs, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(**inputs, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return inputs["input_ids"].shape[0] * new_tokens / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model, 8 new tokens; no RESULTS.md.")
    parser.add_argument("--new-tokens", type=int, default=128, help="Tokens generated per prompt.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="Batch sizes to measure.")
    parser.add_argument(
        "--uncached-batch-sizes",
        type=int,
        nargs="*",
        default=[1],
        help="Batch sizes at which the (slow) uncached re-computation is also measured.",
    )
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs per row; the best is kept.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda.")
    parser.add_argument(
        "--dtype", default=None, help="float32 or bfloat16 (default: bfloat16 on CUDA, float32 on CPU)."
    )
    options = parser.parse_args()
    new_tokens = 8 if options.quick else options.new_tokens
    if options.dtype is None:
        options.dtype = "bfloat16" if options.device.startswith("cuda") else "float32"
    dtype = getattr(torch, options.dtype)

    with tempfile.TemporaryDirectory() as workdir:
        tokenizer, base, merged, shared = build_models(options.quick, Path(workdir), options.device, dtype)
        rows, results = [], {}
        for batch_size in options.batch_sizes:
            prompts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
                for p in PROMPTS[:batch_size]
            ]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(options.device)
            candidates = [
                ("base model", base, True),
                ("ULDModel merged", merged, True),
                ("ULDModel shared-weight", shared, True),
            ]
            if batch_size in options.uncached_batch_sizes:
                candidates.append(("ULD uncached re-computation", merged, False))
            for name, model, use_cache in candidates:
                speed = tokens_per_second(
                    model, inputs, new_tokens, use_cache, 1 if options.quick else options.repeats
                )
                results[(batch_size, name)] = speed
                print(f"batch {batch_size:2d}  {name:<28} {speed:8.1f} tokens/s", flush=True)
        for (batch_size, name), speed in results.items():
            ratio = speed / results[(batch_size, "base model")]
            rows.append([str(batch_size), name, f"{speed:.1f}", f"{ratio:.2f}×"])
    table = markdown_table(["batch", "model", "tokens/s", "vs base"], rows)
    print(table)
    if not options.quick:
        append_results(f"Generation speed, SmolLM2-135M-Instruct, {new_tokens} new tokens, {options.dtype}", table)


if __name__ == "__main__":
    main()

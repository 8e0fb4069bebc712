"""Training cost of NPO+GD with reference log-probs precomputed once vs recomputed at every step.

The reference model is the PEFT model with its adapter disabled. Its log-probabilities of the forget answers never
change, so `UnlearnTrainer` computes them once before training (`precompute_reference_log_probs=True`); the
alternative is one extra no-grad forward of the forget batch per step. Both runs use the same data, batch and
epochs, side by side.

    python benchmarks/reference_cache.py             # SmolLM2-135M-Instruct; appends to RESULTS.md
    python benchmarks/reference_cache.py --quick     # tiny random model, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearn_peft import UnlearnConfig, UnlearnTrainer
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.testing import tiny_random_llama

try:
    from ._common import append_results, markdown_table
except ImportError:  # run as a script
    from _common import append_results, markdown_table

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "tofu"


def read_rows(name: str, count: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]
    return [{"question": r["question"], "answer": r["answer"]} for r in rows[:count]]


def run(precompute: bool, options: argparse.Namespace, tokenizer, workdir: str) -> dict[str, float]:
    base = smollm2_checkpoint()
    model = tiny_random_llama(tokenizer) if options.quick else AutoModelForCausalLM.from_pretrained(base)
    args = UnlearnConfig(
        output_dir=workdir,
        method="npo",
        retain_loss="nll",
        precompute_reference_log_probs=precompute,
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        max_length=128,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    rows = options.rows
    started = time.perf_counter()
    trainer = UnlearnTrainer(
        model,
        args=args,
        forget_dataset=read_rows("forget01_perturbed.json", rows),
        retain_dataset=read_rows("retain_perturbed_head40.json", rows),
        processing_class=tokenizer,
    )
    setup = time.perf_counter() - started
    started = time.perf_counter()
    trainer.train()
    training = time.perf_counter() - started
    return {"setup": setup, "train": training, "per_epoch": training / options.epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model; no RESULTS.md.")
    parser.add_argument("--rows", type=int, default=16, help="Forget rows (and as many retain rows).")
    parser.add_argument("--epochs", type=int, default=3, help="Training epochs.")
    parser.add_argument("--batch-size", type=int, default=4, help="Per-device batch size.")
    options = parser.parse_args()
    if options.quick:
        options.rows, options.epochs = 4, 1
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        cached = run(True, options, tokenizer, workdir)
        recomputed = run(False, options, tokenizer, workdir)
    rows = [
        ["precomputed once", f"{cached['setup']:.1f}", f"{cached['per_epoch']:.1f}", f"{cached['train']:.1f}"],
        [
            "recomputed every step",
            f"{recomputed['setup']:.1f}",
            f"{recomputed['per_epoch']:.1f}",
            f"{recomputed['train']:.1f}",
        ],
    ]
    table = markdown_table(["reference log-probs", "set-up s (incl. precompute)", "s / epoch", "training s"], rows)
    total_cached, total_recomputed = cached["setup"] + cached["train"], recomputed["setup"] + recomputed["train"]
    summary = (
        f"Per epoch: recomputing is {recomputed['per_epoch'] / cached['per_epoch']:.2f}× the cost of precomputing; "
        f"whole run (set-up + training): {total_recomputed / total_cached:.2f}×."
    )
    print(table)
    print(summary)
    if not options.quick:
        append_results(
            f"NPO+GD reference log-probs: precomputed vs recomputed, SmolLM2-135M-Instruct, {options.rows} forget + "
            f"{options.rows} retain rows, batch {options.batch_size}, {options.epochs} epochs, LoRA r=16",
            table,
            summary,
        )


if __name__ == "__main__":
    main()

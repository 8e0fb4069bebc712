"""Why does ULD's assistant stall on TOFU-length answers? One suspect changed at a time, side by side.

SmolLM2-135M-Instruct, 20 TOFU forget rows (forget01, one author pair's questions) and 20 TOFU retain rows
(`tests/fixtures/tofu`, MIT), question-answer only. Every variant starts from the library's ULD defaults and changes
one setting: learning rate, warm-up, K, LoRA rank, the retain term's weight, rows per step. Each trains for the same
number of optimiser steps with early stopping off and reports the forget NLL and retain `KL(uniform ‖ p)` (means
over the last 10 batches), the first step at which both were within the default thresholds (sustained over the
window), and the seconds per step.

    python benchmarks/uld_convergence.py                # about 40 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/uld_convergence.py --quick        # tiny random model, 2 variants, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from unlearn_peft import UnlearnConfig, UnlearnTrainer
from unlearn_peft.convergence import ConvergenceTracker
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.testing import tiny_random_llama

try:
    from ._common import append_results, markdown_table, tofu_question_answers
except ImportError:  # run as a script
    from _common import append_results, markdown_table, tofu_question_answers

DEFAULTS = UnlearnConfig(output_dir="unused")
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults (lr 1e-3, warm-up 10%, K=7, r=32, retain weight 6.5, 4+4 rows/step)": {},
    "lr 3e-3": {"learning_rate": 3e-3},
    "lr 3e-4": {"learning_rate": 3e-4},
    "warm-up 30%": {"warmup_steps": 0.3},
    "constant lr after warm-up": {"lr_scheduler_type": "constant_with_warmup"},
    "K=15 (half the layers)": {"assistant_num_layers": 15},
    "LoRA r=8": {"lora_rank": 8},
    "retain weight 1.0": {"retain_loss_weight": 1.0},
    "8+8 rows/step": {"per_device_train_batch_size": 8},
    "lr 3e-3, constant lr after warm-up": {"learning_rate": 3e-3, "lr_scheduler_type": "constant_with_warmup"},
    "lr 3e-3, constant lr after warm-up, K=15": {
        "learning_rate": 3e-3,
        "lr_scheduler_type": "constant_with_warmup",
        "assistant_num_layers": 15,
    },
}


class FirstConvergence(TrainerCallback):
    """Notes the first step at which the default convergence test passes (training goes on)."""

    def __init__(self, tracker: ConvergenceTracker) -> None:
        self.tracker, self.step = tracker, None

    def on_step_end(self, args, state, control, **kwargs):
        if self.step is None and self.tracker.converged:
            self.step = state.global_step
        return control


def run_variant(settings: dict[str, Any], options: argparse.Namespace, tokenizer, forget, retain) -> dict[str, Any]:
    settings = dict(settings)
    rank = settings.pop("lora_rank", None)
    base = (
        tiny_random_llama(tokenizer)
        if options.quick
        else AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.float32)
    )
    with tempfile.TemporaryDirectory() as workdir:
        args = UnlearnConfig(
            output_dir=workdir,
            max_steps=options.steps,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            logging_steps=options.steps,
            stop_when_converged=False,
            seed=0,
            **{"per_device_train_batch_size": 4, **settings},
        )
        peft_config = None
        if rank is not None:
            peft_config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.05, task_type="CAUSAL_LM")
        trainer = UnlearnTrainer(
            base,
            args=args,
            forget_dataset=forget,
            retain_dataset=retain,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        first = FirstConvergence(trainer.convergence)
        trainer.add_callback(first)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return {
        "forget": trainer.convergence.forget_mean,
        "retain": trainer.convergence.retain_mean,
        "first_converged_step": first.step,
        "s_per_step": seconds / max(trainer.state.global_step, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model, 2 variants, 3 steps; no RESULTS.md.")
    parser.add_argument("--steps", type=int, default=150, help="Optimiser steps per variant.")
    parser.add_argument("--variants", nargs="+", help="Names of the variants to run (default: all).")
    options = parser.parse_args()
    if options.quick:
        options.steps = 3
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    forget, retain = (
        tofu_question_answers("forget01_perturbed.json", 20),
        tofu_question_answers("retain_perturbed_head40.json", 20),
    )
    names = options.variants or list(VARIANTS)[: 2 if options.quick else None]
    rows, results = [], {}
    for name in names:
        result = run_variant(VARIANTS[name], options, tokenizer, forget, retain)
        results[name] = result
        first = result["first_converged_step"]
        rows.append(
            [
                name,
                f"{result['forget']:.3f}",
                f"{result['retain']:.3f}",
                "–" if first is None else str(first),
                f"{result['s_per_step']:.2f}",
            ]
        )
        print(f"{name}: {result}", flush=True)
    header = [
        "variant",
        f"forget NLL after {options.steps} steps",
        "retain KL",
        f"first step converged (≤ {DEFAULTS.converged_forget_nll} / ≤ {DEFAULTS.converged_retain_kl})",
        "s / step",
    ]
    table = markdown_table(header, rows)
    print(table)
    print("JSON " + json.dumps(results))
    if not options.quick:
        append_results(
            f"ULD convergence on TOFU answers, one setting at a time, SmolLM2-135M-Instruct, {options.steps} steps",
            table,
            "20 TOFU forget01 rows and 20 retain rows, question-answer only; losses are means over the last 10 "
            "batches (answer tokens only; retain KL is KL(uniform ‖ assistant) per answer token).",
        )


if __name__ == "__main__":
    main()

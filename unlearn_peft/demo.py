"""`python -m unlearn_peft.demo`: unlearn European capitals from SmolLM2-135M-Instruct on CPU, offline.

It converts the embedded SmolLM2 model once (see `unlearn_peft.embedded`), trains a ULD assistant to forget 20
question-answer pairs about European capitals while keeping 20 about other capitals, and prints the answer
probabilities of the model before and after unlearning, including on paraphrased forget questions that training
never saw. The adapter is written to `--output-dir`.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .config import UnlearnConfig
from .embedded import smollm2_checkpoint
from .evaluation import answer_probability
from .modeling import ULDModel
from .trainer import UnlearnTrainer


def load_demo_rows(name: str) -> list[dict[str, Any]]:
    text = resources.files("unlearn_peft.demo_data").joinpath(name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/demo-smollm2-uld", help="Where the adapter is saved.")
    parser.add_argument("--max-steps", type=int, default=150, help="Optimiser steps of the assistant.")
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="Learning rate of the LoRA assistant.")
    options = parser.parse_args(argv)

    started = time.time()
    checkpoint = smollm2_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    forget = load_demo_rows("european_capitals_forget.jsonl")
    retain = load_demo_rows("world_capitals_retain.jsonl")

    def probabilities(evaluated) -> dict[str, float]:
        def mean(rows, question_key):
            values = [answer_probability(evaluated, tokenizer, r[question_key], r["answer"]) for r in rows]
            return sum(values) / len(values)

        return {
            "forget": mean(forget, "question"),
            "forget (paraphrased, unseen)": mean(forget, "paraphrased_question"),
            "retain": mean(retain, "question"),
        }

    before = probabilities(model)
    args = UnlearnConfig(
        output_dir=options.output_dir,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=4,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    trainer = UnlearnTrainer(
        model,
        args=args,
        forget_dataset=[{"question": r["question"], "answer": r["answer"]} for r in forget],
        retain_dataset=[{"question": r["question"], "answer": r["answer"]} for r in retain],
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(options.output_dir)
    unlearned = ULDModel.from_pretrained(options.output_dir, base_model=model)
    after = probabilities(unlearned)

    print("\nAnswer probability exp(-mean NLL), mean over 20 questions each:")
    print(f"{'split':<30} {'before':>8} {'after':>8} {'ratio':>7}")
    for split, value in before.items():
        print(f"{split:<30} {value:8.3f} {after[split]:8.3f} {after[split] / value:7.3f}")
    print(f"\nAdapter saved to {options.output_dir} in {time.time() - started:.0f} s.")


if __name__ == "__main__":
    main()

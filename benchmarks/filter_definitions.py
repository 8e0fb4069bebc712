"""Compare definitions of ULD's plausibility filter on a converged assistant (SmolLM2-135M, K=8).

It trains a ULD assistant to forget the demo's European capitals (keeping other capitals), then scores four ways
of combining `target − α · filter(assistant)` by the answer probability relative to the base model on: the forget
questions, their paraphrases (never trained on), the retain questions, and held-out general knowledge
(`benchmarks/data/general_knowledge_heldout.jsonl`). Closer to 0 is better on forget, closer to 1 elsewhere.

    python benchmarks/filter_definitions.py            # about 5 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/filter_definitions.py --quick    # tiny random model, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import QUESTION_ANSWER, render_row, tokenize_row
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.logit_difference import filtered_assistant_logits, plausible_token_mask
from unlearn_peft.sources import embedded_rows
from unlearn_peft.testing import tiny_random_llama

try:
    from ._common import append_results, markdown_table
except ImportError:  # run as a script
    from _common import append_results, markdown_table

HELDOUT = Path(__file__).parent / "data" / "general_knowledge_heldout.jsonl"
ALPHA, THRESHOLD = 0.75, 1e-2


def no_filter(target: torch.Tensor, assistant: torch.Tensor) -> torch.Tensor:
    return assistant


def raw_zero_outside(target: torch.Tensor, assistant: torch.Tensor) -> torch.Tensor:
    return torch.where(plausible_token_mask(target, THRESHOLD), assistant, torch.zeros_like(assistant))


def log_probs_zero_outside(target: torch.Tensor, assistant: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(assistant, dim=-1)
    return torch.where(plausible_token_mask(target, THRESHOLD), log_probs, torch.zeros_like(log_probs))


def centred_log_probs(target: torch.Tensor, assistant: torch.Tensor) -> torch.Tensor:
    return filtered_assistant_logits(target, assistant, THRESHOLD)  # the definition ULDModel uses


DEFINITIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "none (raw target − 0.75·assistant)": no_filter,
    "raw assistant logits, zero outside the set (reference)": raw_zero_outside,
    "assistant log-probs, zero outside the set": log_probs_zero_outside,
    "assistant log-probs centred over the plausible set (unlearn-peft)": centred_log_probs,
}


@torch.no_grad()
def answer_log_probs(model: ULDModel, tokenizer, question: str, answer: str) -> dict[str, float]:
    """Mean answer log-probability under the base and under each filter definition."""
    prompt_ids, completion_ids = tokenize_row(
        render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "benchmark", 0), tokenizer
    )
    input_ids = torch.tensor([prompt_ids + completion_ids])
    target = model.target(input_ids).logits[0, len(prompt_ids) - 1 : -1].float()
    assistant = model.assistant(input_ids).logits[0, len(prompt_ids) - 1 : -1].float()
    targets = torch.tensor(completion_ids)[:, None]

    def mean_log_prob(logits: torch.Tensor) -> float:
        return float(torch.log_softmax(logits, dim=-1).gather(-1, targets).mean())

    scores = {"base": mean_log_prob(target)}
    for name, definition in DEFINITIONS.items():
        scores[name] = mean_log_prob(target - ALPHA * definition(target, assistant))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model and 2 steps; no RESULTS.md.")
    parser.add_argument("--max-steps", type=int, default=150, help="Training steps of the assistant.")
    parser.add_argument("--assistant-layers", type=int, default=8, help="K, the assistant's decoder layers.")
    options = parser.parse_args()

    forget = embedded_rows("european_capitals_forget")
    retain = embedded_rows("world_capitals_retain")
    heldout = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as workdir:
        base_path = smollm2_checkpoint()
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        if options.quick:
            base = tiny_random_llama(tokenizer)
            forget, retain, heldout = forget[:2], retain[:2], heldout[:2]
        else:
            base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        args = UnlearnConfig(
            output_dir=workdir,
            max_steps=2 if options.quick else options.max_steps,
            learning_rate=3e-3,
            per_device_train_batch_size=4,
            assistant_num_layers=2 if options.quick else options.assistant_layers,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            logging_steps=25,
            seed=0,
        )
        qa = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
        trainer = UnlearnTrainer(
            base, args=args, forget_dataset=qa(forget), retain_dataset=qa(retain), processing_class=tokenizer
        )
        trainer.train()
        trainer.save_model(workdir)
        model = ULDModel.from_pretrained(workdir, base_model=base)

        splits = {
            "forget": [(r["question"], r["answer"]) for r in forget],
            "paraphrased forget (unseen)": [(r["paraphrased_question"], r["answer"]) for r in forget],
            "retain": [(r["question"], r["answer"]) for r in retain],
            "held-out utility": [(r["question"], r["answer"]) for r in heldout],
        }
        ratios: dict[str, dict[str, float]] = {name: {} for name in DEFINITIONS}
        for split, pairs in splits.items():
            scored = [answer_log_probs(model, tokenizer, q, a) for q, a in pairs]
            for name in DEFINITIONS:
                # Ratio of length-normalised answer probabilities exp(mean log p), averaged over questions.
                values = [math.exp(s[name] - s["base"]) for s in scored]
                ratios[name][split] = sum(values) / len(values)
    rows = [[name] + [f"{ratios[name][split]:.3f}" for split in splits] for name in DEFINITIONS]
    table = markdown_table(["filter definition", *splits], rows)
    print(table)
    if not options.quick:
        append_results(
            "Plausibility-filter definitions, SmolLM2-135M-Instruct, K=8, α=0.75, τ=1e-2",
            table,
            "Answer probability of the unlearned model divided by the base model's, mean over questions "
            "(20 forget, 20 paraphrased forget, 20 retain, 12 held-out).",
        )


if __name__ == "__main__":
    main()

"""Choose ULD's plausibility filter by measurement, on a target that knows its facts and on one that memorised them.

For each target it trains one ULD assistant (SmolLM2-135M-Instruct, K=8, lr 3e-3, 150 steps) and scores the
unlearned model `target − α · f(assistant)` under several filters: none, and the threshold τ = 1e-2 with floors
m (`min_tokens_to_keep`) of 1 (the filter before the floor existed), 10, 100 and the reference code's ⌊τ·V⌋.

- `demo`: SmolLM2 as shipped; forget 20 European capitals, keep 20 other capitals (the demo's data).
- `memorised`: SmolLM2 fine-tuned on every weight on 32 fictitious people until its mean answer probability is at
  least 0.95 (cached between runs); forget 16 of them, keep 16. This is TOFU's situation: one token with p ≈ 1 at
  most answer positions.

Reported per split (forget, the forget questions paraphrased and never trained on, retain, held-out general
knowledge from `benchmarks/data/general_knowledge_heldout.jsonl`): the answer probability `exp(−mean NLL)` of the
unlearned model divided by the target's, averaged over questions; and, read as generated text, the share of greedy
answers that still state the fact (the answer's last phrase, e.g. the city).

    python benchmarks/filter_definitions.py            # about 15 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/filter_definitions.py --quick    # tiny random model, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import QUESTION_ANSWER, render_row, tokenize_row
from unlearn_peft.embedded import cache_dir, smollm2_checkpoint
from unlearn_peft.evaluation import greedy_answers
from unlearn_peft.logit_difference import uld_logits
from unlearn_peft.sources import embedded_fact, embedded_rows
from unlearn_peft.testing import memorize, tiny_random_llama

try:
    from ._common import append_results, markdown_table
except ImportError:  # run as a script
    from _common import append_results, markdown_table

HELDOUT = Path(__file__).parent / "data" / "general_knowledge_heldout.jsonl"
ALPHA, THRESHOLD = 0.75, 1e-2
MEMORISED_PROBABILITY = 0.95
TARGETS = {
    "demo": ("european_capitals_forget", "world_capitals_retain"),
    "memorised": ("fictitious_people_forget", "fictitious_people_retain"),
}


def filters(vocab_size: int) -> dict[str, tuple[float, int]]:
    """Name → (τ, floor m). τ = 0 is no filter."""
    reference_floor = int(THRESHOLD * vocab_size)
    return {
        "no filter": (0.0, 1),
        "τ=1e-2, m=1 (no floor: before)": (THRESHOLD, 1),
        "τ=1e-2, m=10": (THRESHOLD, 10),
        "τ=1e-2, m=100": (THRESHOLD, 100),
        f"τ=1e-2, m=⌊τ·V⌋={reference_floor} (reference code)": (THRESHOLD, reference_floor),
    }


@torch.no_grad()
def answer_log_probs(model: ULDModel, tokenizer, question: str, answer: str, variants) -> dict[str, float]:
    """Mean answer-token log-probability under the target and under each filter variant."""
    rendered = render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "benchmark", 0)
    prompt_ids, completion_ids = tokenize_row(rendered, tokenizer)
    input_ids = torch.tensor([prompt_ids + completion_ids])
    answer_positions = slice(len(prompt_ids) - 1, -1)
    target = model.target(input_ids).logits[0, answer_positions].float()
    assistant = model.assistant(input_ids).logits[0, answer_positions].float()
    targets = torch.tensor(completion_ids)[:, None]

    def mean_log_prob(logits: torch.Tensor) -> float:
        return float(torch.log_softmax(logits, dim=-1).gather(-1, targets).mean())

    scores = {"target": mean_log_prob(target)}
    for name, (threshold, floor) in variants.items():
        scores[name] = mean_log_prob(uld_logits(target, assistant, ALPHA, threshold, floor))
    return scores


def memorised_target(tokenizer, quick: bool, rows: list[dict]) -> tuple[PreTrainedModel, float]:
    """SmolLM2 fine-tuned until it has memorised `rows` (cached in the unlearn_peft cache directory)."""
    if quick:
        model = tiny_random_llama(tokenizer)
        return model, memorize(model, tokenizer, rows, min_answer_probability=0.0, max_epochs=1)
    directory = cache_dir() / f"benchmarks/smollm2-memorised-fictitious-people-p{MEMORISED_PROBABILITY}"
    if (directory / "memorised.json").exists():
        probability = json.loads((directory / "memorised.json").read_text())["answer_probability"]
        return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval(), probability
    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.float32)
    probability = memorize(model, tokenizer, rows, min_answer_probability=MEMORISED_PROBABILITY)
    model.save_pretrained(directory)
    (directory / "memorised.json").write_text(json.dumps({"answer_probability": probability}) + "\n")
    return model, probability


def evaluate_target(name: str, options: argparse.Namespace, tokenizer, heldout: list[dict]) -> tuple[str, str]:
    forget_name, retain_name = TARGETS[name]
    forget, retain = embedded_rows(forget_name), embedded_rows(retain_name)
    if options.quick:
        forget, retain, heldout = forget[:2], retain[:2], heldout[:2]
    qa = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
    if name == "memorised":
        base, probability = memorised_target(tokenizer, options.quick, qa(forget + retain))
        described = f"fine-tuned until its mean answer probability on all 32 rows was {probability:.3f}"
    elif options.quick:
        base, described = tiny_random_llama(tokenizer), "tiny random model"
    else:
        base, described = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.float32), "as is"
    with tempfile.TemporaryDirectory() as workdir:
        args = UnlearnConfig(
            output_dir=workdir,
            max_steps=2 if options.quick else options.max_steps,
            learning_rate=3e-3,
            per_device_train_batch_size=4,
            assistant_num_layers=2 if options.quick else options.assistant_layers,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            logging_steps=25,
            seed=0,
        )
        trainer = UnlearnTrainer(
            base, args=args, forget_dataset=qa(forget), retain_dataset=qa(retain), processing_class=tokenizer
        )
        trainer.train()
        trainer.save_model(workdir)
        model = ULDModel.from_pretrained(workdir, base_model=base, assistant_weight=ALPHA)
    variants = filters(model.config.vocab_size)
    splits = {
        "forget": [(r["question"], r["answer"]) for r in forget],
        "paraphrased forget (unseen)": [(r["paraphrased_question"], r["answer"]) for r in forget],
        "retain": [(r["question"], r["answer"]) for r in retain],
        "held-out utility": [(r["question"], r["answer"]) for r in heldout],
    }
    ratios: dict[str, dict[str, float]] = {variant: {} for variant in variants}
    for split, pairs in splits.items():
        scored = [answer_log_probs(model, tokenizer, q, a, variants) for q, a in pairs]
        for variant in variants:
            # Ratio of length-normalised answer probabilities exp(mean log p), averaged over questions.
            ratios[variant][split] = sum(math.exp(s[variant] - s["target"]) for s in scored) / len(scored)
    stated_splits = ["forget", "paraphrased forget (unseen)", "retain"]
    stated: dict[str, dict[str, float]] = {variant: {} for variant in ["target", *variants]}
    for variant in stated:
        model.assistant_weight = 0.0 if variant == "target" else ALPHA
        if variant != "target":
            model.plausibility_threshold, model.min_tokens_to_keep = variants[variant]
        for split in stated_splits:
            questions, answers = zip(*splits[split], strict=True)
            generated = greedy_answers(model, tokenizer, list(questions), max_new_tokens=24, description=variant)
            hits = [embedded_fact(a).lower() in g.lower() for a, g in zip(answers, generated, strict=True)]
            stated[variant][split] = sum(hits) / len(hits)
    header = ["filter", *splits, *[f"{split}: fact stated (greedy)" for split in stated_splits]]
    rows = [
        ["target (no unlearning)", *["1.000"] * len(splits), *[f"{stated['target'][s]:.2f}" for s in stated_splits]]
    ]
    rows += [
        [
            variant,
            *[f"{ratios[variant][s]:.3f}" for s in splits],
            *[f"{stated[variant][s]:.2f}" for s in stated_splits],
        ]
        for variant in variants
    ]
    losses = [entry for entry in trainer.state.log_history if "loss_forget" in entry][-1]
    notes = (
        f"Target: SmolLM2-135M-Instruct {described}. Forget {len(forget)}, retain {len(retain)}, held-out "
        f"{len(heldout)} questions; α = {ALPHA}. Assistant after {trainer.state.global_step} steps: "
        f"loss_forget {float(losses['loss_forget']):.3f}, loss_retain {float(losses['loss_retain']):.3f}. "
        "Probability columns: unlearned ÷ target; 'fact stated': share of greedy answers containing the fact."
    )
    return markdown_table(header, rows), notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model and 2 steps; no RESULTS.md.")
    parser.add_argument("--max-steps", type=int, default=150, help="Training steps of the assistant.")
    parser.add_argument("--assistant-layers", type=int, default=8, help="K, the assistant's decoder layers.")
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS), help="Which targets.")
    options = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    heldout = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()]
    for name in options.targets:
        table, notes = evaluate_target(name, options, tokenizer, heldout)
        print(f"\n{name} target\n{table}\n{notes}", flush=True)
        if not options.quick:
            append_results(
                f"Plausibility filter and its floor, {name} target, SmolLM2-135M-Instruct, K=8", table, notes
            )


if __name__ == "__main__":
    main()

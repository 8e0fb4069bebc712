"""Choose ULD's plausibility filter by measurement, on a target that knows its facts and on one that memorised them.

For each target it trains one ULD assistant (SmolLM2-135M-Instruct, K=8, lr 3e-3, 150 steps) and scores the
unlearned model `target − α · f(assistant)` under several filters: none, and the threshold τ = 1e-2 with floors
m (`min_tokens_to_keep`) of 1 (the filter before the floor existed), 10, 100 and the reference code's ⌊τ·V⌋.

- `demo`: SmolLM2 as shipped; forget 20 European capitals, keep 20 other capitals (the demo's data).
- `memorised`: SmolLM2 fine-tuned on every weight on 32 fictitious people until its mean answer probability is at
  least 0.95 (cached between runs); forget 16 of them, keep 16. This is TOFU's situation: one token with p ≈ 1 at
  most answer positions. (Both are built in `_targets.py`.)

Reported per split (forget, the forget questions paraphrased and never trained on, retain, held-out general
knowledge from `benchmarks/data/general_knowledge_heldout.jsonl`): the answer probability `exp(−mean NLL)` of the
unlearned model divided by the target's, averaged over questions; and, read as generated text, the share of greedy
answers that still state the fact (the answer's last phrase, e.g. the city).

    python benchmarks/filter_definitions.py            # about 15 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/filter_definitions.py --quick    # tiny random model, seconds (CI)
"""

from __future__ import annotations

import argparse

from unlearn_peft.evaluation import greedy_answers
from unlearn_peft.sources import embedded_fact

try:
    from ._common import markdown_table
    from ._targets import assistant_summary, load_target, probability_ratios, run_on_targets, train_assistant
except ImportError:  # run as a script
    from _common import markdown_table
    from _targets import assistant_summary, load_target, probability_ratios, run_on_targets, train_assistant

ALPHA, THRESHOLD = 0.75, 1e-2


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


def evaluate_target(name: str, options: argparse.Namespace, tokenizer) -> tuple[str, str]:
    target = load_target(name, tokenizer, options.quick)
    model, trainer = train_assistant(
        target,
        tokenizer,
        max_steps=2 if options.quick else options.max_steps,
        learning_rate=3e-3,
        per_device_train_batch_size=4,
        assistant_num_layers=2 if options.quick else options.assistant_layers,
        one_sided_subtraction=False,  # the filters are compared on the paper's two-sided subtraction
    )
    model.assistant_weight = ALPHA
    variants = filters(model.config.vocab_size)
    splits = target.question_splits()
    settings = {name: (ALPHA, threshold, floor) for name, (threshold, floor) in variants.items()}
    ratios = probability_ratios(model, tokenizer, splits, settings)
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
    notes = (
        f"Target: SmolLM2-135M-Instruct {target.described}. Forget {len(target.forget)}, retain {len(target.retain)}, "
        f"held-out {len(target.heldout)} questions; α = {ALPHA}. Assistant after {assistant_summary(trainer)}. "
        "Probability columns: unlearned ÷ target; 'fact stated': share of greedy answers containing the fact."
    )
    return markdown_table(header, rows), notes


def main() -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--max-steps", type=int, default=150, help="Training steps of the assistant.")
        parser.add_argument("--assistant-layers", type=int, default=8, help="K, the assistant's decoder layers.")

    run_on_targets(
        __doc__,
        arguments,
        evaluate_target,
        "Plausibility filter and its floor, {name} target, SmolLM2-135M-Instruct, K=8",
    )


if __name__ == "__main__":
    main()

"""Choose ULD's assistant weight α by measurement, on a target that knows its facts and on one that memorised them.

For each target one ULD assistant is trained at the library's defaults (`UnlearnConfig(output_dir=...)`: lr 3e-3,
constant after warm-up, K = a quarter of the layers, trained until converged), then the unlearned model
`target − α · f(assistant)` (the default plausibility filter) is scored at several α:

- `demo`: SmolLM2-135M-Instruct as shipped; forget 20 European capitals, keep 20 other capitals (a topic it knows).
- `memorised`: SmolLM2 fine-tuned on every weight on 32 fictitious people until its mean answer probability is at
  least 0.95 (cached; built in `_targets.py`, shared with `filter_definitions.py`); forget 16 of them, keep 16.

Each α is also scored with `weight_by_assistant_mass=True` (rows "α, mass-weighted"): `f(z_A)` scaled at each
position by the assistant's probability mass on the plausible set (`unlearn_peft.logit_difference`).

Reported per split (forget, the forget questions paraphrased and never trained on, retain, held-out general
knowledge from `benchmarks/data/general_knowledge_heldout.jsonl`): the answer probability `exp(−mean NLL)` of the
unlearned model divided by the target's, averaged over questions; and, read as generated text, how many greedy
answers state the fact (the answer's last phrase), or for held-out questions how many greedy answers are unchanged.

    python benchmarks/assistant_weight.py            # about 15 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/assistant_weight.py --seed 1   # another assistant (seed 0 by default)
    python benchmarks/assistant_weight.py --plausible-retain-loss-weight 0   # the paper's retain term alone
    python benchmarks/assistant_weight.py --quick    # tiny random model, seconds (CI)
"""

from __future__ import annotations

import argparse

from unlearn_peft.evaluation import greedy_answers
from unlearn_peft.sources import embedded_fact

try:
    from ._common import commit, markdown_table
    from ._targets import assistant_summary, load_target, probability_ratios, run_on_targets, train_assistant
except ImportError:  # run as a script
    from _common import commit, markdown_table
    from _targets import assistant_summary, load_target, probability_ratios, run_on_targets, train_assistant

ALPHAS = (1.0, 0.75, 0.6, 0.5, 0.4, 0.25)
MASS_WEIGHTED_ALPHAS = (1.0, 0.75, 0.6)
MAX_NEW_TOKENS = 24


def evaluate_target(name: str, options: argparse.Namespace, tokenizer) -> tuple[str, str]:
    target = load_target(name, tokenizer, options.quick)
    quick = {"max_steps": 2, "assistant_num_layers": 2} if options.quick else {}
    if options.plausible_retain_loss_weight is not None:
        quick["plausible_retain_loss_weight"] = options.plausible_retain_loss_weight
    model, trainer = train_assistant(target, tokenizer, seed=options.seed, **quick)
    splits = target.question_splits()
    # Setting key (α, mass-weighted) → uld_logits' arguments after the two logits.
    keys = [(alpha, False) for alpha in ALPHAS] + [(alpha, True) for alpha in MASS_WEIGHTED_ALPHAS]
    settings = {
        (alpha, weighted): (alpha, model.plausibility_threshold, model.min_tokens_to_keep, None, weighted)
        for alpha, weighted in keys
    }
    ratios = probability_ratios(model, tokenizer, splits, settings)
    generated: dict[tuple[float, bool], dict[str, list[str]]] = {}
    for alpha, weighted in [(0.0, False), *keys]:
        model.assistant_weight, model.weight_by_assistant_mass = alpha, weighted
        generated[alpha, weighted] = {
            split: greedy_answers(
                model, tokenizer, [q for q, _ in pairs], max_new_tokens=MAX_NEW_TOKENS, description=f"α={alpha}"
            )
            for split, pairs in splits.items()
        }

    def text_columns(key: tuple[float, bool]) -> list[str]:
        columns = []
        for split in ("forget", "paraphrased forget (unseen)", "retain"):
            answers = [a for _, a in splits[split]]
            hits = sum(
                embedded_fact(a).lower() in g.lower() for a, g in zip(answers, generated[key][split], strict=True)
            )
            columns.append(f"{hits}/{len(answers)}")
        unchanged = sum(
            a == b
            for a, b in zip(generated[0.0, False]["held-out utility"], generated[key]["held-out utility"], strict=True)
        )
        columns.append(f"{unchanged}/{len(splits['held-out utility'])}")
        return columns

    header = [
        "α",
        *splits,
        "forget: fact stated",
        "paraphrased: fact stated",
        "retain: fact stated",
        "held-out: answer unchanged",
    ]
    rows = [["0 (target)", *["1.000"] * len(splits), *text_columns((0.0, False))]]
    rows += [
        [f"{alpha:g}{', mass-weighted' if weighted else ''}", *[f"{ratios[alpha, weighted][s]:.3f}" for s in splits]]
        + text_columns((alpha, weighted))
        for alpha, weighted in keys
    ]
    changed = (
        f" except plausible_retain_loss_weight={options.plausible_retain_loss_weight:g}"
        if options.plausible_retain_loss_weight is not None
        else f" (plausible_retain_loss_weight={trainer.build_sidecar().training['plausible_retain_loss_weight']:g})"
    )
    notes = (
        f"Target: SmolLM2-135M-Instruct {target.described}. Forget {len(target.forget)}, retain {len(target.retain)}, "
        f"held-out {len(target.heldout)} questions; filter τ = {model.plausibility_threshold:g}, floor "
        f"{model.min_tokens_to_keep}. Assistant at the library defaults{changed}, seed {options.seed}: "
        f"{assistant_summary(trainer)}. Probability columns: unlearned ÷ target; greedy answers of {MAX_NEW_TOKENS} "
        f"new tokens. Commit {commit()}."
    )
    return markdown_table(header, rows), notes


def main() -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--seed", type=int, default=0, help="Training seed of the assistant (the data order and LoRA's init)."
        )
        parser.add_argument(
            "--plausible-retain-loss-weight",
            type=float,
            default=None,
            help="UnlearnConfig.plausible_retain_loss_weight of the assistant (default: the library's).",
        )

    run_on_targets(
        __doc__,
        arguments,
        evaluate_target,
        "ULD's assistant weight α, {name} target, SmolLM2-135M-Instruct, library defaults",
    )


if __name__ == "__main__":
    main()

"""Choose ULD's assistant weight α by measurement, on a target that knows its facts and on one that memorised them.

For each target one ULD assistant is trained at the library's defaults (`UnlearnConfig(output_dir=...)`: lr 3e-3,
constant after warm-up, K = a quarter of the layers, trained until converged), then the unlearned model
`target − α · f(assistant)` (the default plausibility filter) is scored at several α:

- `demo`: SmolLM2-135M-Instruct as shipped; forget 20 European capitals, keep 20 other capitals (a topic it knows).
- `memorised`: SmolLM2 fine-tuned on every weight on 32 fictitious people until its mean answer probability is at
  least 0.95 (cached; built in `_targets.py`, shared with `filter_definitions.py`); forget 16 of them, keep 16.
- `near-threshold` (`--targets near-threshold`, not run by default): the same people, fine-tuned only until the mean
  answer probability reaches 0.9, where the library's choice of subtraction changes.

Each α is also scored with `weight_by_assistant_mass=True` (rows "α, mass-weighted"): `f(z_A)` scaled at each
position by the assistant's probability mass on the plausible set, and with `one_sided_subtraction=True` (rows
"α, one-sided"): `f(z_A)` clipped at zero, so the assistant only lowers tokens (`unlearn_peft.logit_difference`),
and with `subtraction_margin=2` as well (rows "α, one-sided, δ 2"): `max(0, f(z_A) − 2)`, only what the assistant
prefers by more than 2 nats is lowered; and with the tokenizer's special tokens (end of turn, end of text) keeping the
target's logits (`exempt_special_tokens`, rows "…, special tokens exempt"; every other row subtracts on every token).
The library chooses its subtraction from the target's answer probability on the forget rows, read before training;
the row it chose is marked "(default)".

Reported per split (forget, the forget questions paraphrased and never trained on, retain, held-out general knowledge
from `benchmarks/data/general_knowledge_heldout.jsonl`): the answer probability `exp(−mean NLL)` of the unlearned model
divided by the target's, averaged over questions; and, read as generated text, how many greedy answers state the fact
(the answer's last phrase; for held-out questions, a word of the row's `facts`), how many retain and held-out greedy
answers are unchanged, and how many forget and paraphrased greedy answers are degenerate (`degenerate`: a word three
times in a row, fewer than half distinct words, or a "word" of more than 25 characters: words run together).

    python benchmarks/assistant_weight.py            # about 15 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/assistant_weight.py --seed 1   # another assistant (seed 0 by default)
    python benchmarks/assistant_weight.py --plausible-retain-loss-weight 0   # the paper's retain term alone
    python benchmarks/assistant_weight.py --targets near-threshold   # a target memorised to 0.9 only (≈ 20 min)
    python benchmarks/assistant_weight.py --quick    # tiny random model, seconds (CI)
"""

from __future__ import annotations

import argparse
import re

from unlearn_peft.evaluation import greedy_answers
from unlearn_peft.sources import embedded_fact

try:
    from ._common import commit, markdown_table
    from ._targets import assistant_summary, load_target, probability_ratios, run_on_targets, train_assistant
except ImportError:  # run as a script
    from _common import commit, markdown_table
    from _targets import assistant_summary, load_target, probability_ratios, run_on_targets, train_assistant

ALPHAS = (1.0, 0.75, 0.6, 0.5, 0.4, 0.25)
# The variants of f(z_A), as each row's suffix.
SUBTRACTION_MARGIN = 2.0
PLAIN, MASS_WEIGHTED, ONE_SIDED = "", ", mass-weighted", ", one-sided"
WITH_MARGIN = f", one-sided, δ {SUBTRACTION_MARGIN:g}"
SPECIAL_EXEMPT = ", special tokens exempt"
MASS_WEIGHTED_ALPHAS = (1.0, 0.75, 0.6)
ONE_SIDED_ALPHAS = (1.5, 1.0, 0.75, 0.6)
WITH_MARGIN_ALPHAS = (1.5, 1.0)
SPECIAL_EXEMPT_ALPHAS = (1.0, 0.6)
MAX_NEW_TOKENS = 24
RUN_TOGETHER_CHARACTERS = 25


def degenerate(text: str) -> bool:
    """A greedy answer no reader would take for one: empty, a word three times in a row, fewer than half distinct
    words, or a "word" longer than `RUN_TOGETHER_CHARACTERS` characters (words run together)."""
    words = text.split()
    if not words:
        return True
    repeated = any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
    return repeated or len(set(words)) < len(words) / 2 or max(map(len, words)) > RUN_TOGETHER_CHARACTERS


def states_heldout_fact(row: dict, answer: str) -> bool:
    """Whether a greedy `answer` to a held-out question states its fact: one of the row's `facts` as a whole word
    (case-insensitive), so "10" does not state "0"."""
    return any(re.search(rf"\b{re.escape(fact)}\b", answer, re.IGNORECASE) for fact in row["facts"])


def default_variant(sidecar, special_ids: list[int]) -> str:
    """The row suffix of the subtraction the trainer recorded in `sidecar`."""
    exempt = sidecar.exempt_token_ids == special_ids
    if sidecar.one_sided_subtraction:
        variant = WITH_MARGIN if sidecar.subtraction_margin == SUBTRACTION_MARGIN else ONE_SIDED
        return f"{variant}{SPECIAL_EXEMPT}" if exempt else variant
    if sidecar.weight_by_assistant_mass:
        return f"{MASS_WEIGHTED}{SPECIAL_EXEMPT}" if exempt else MASS_WEIGHTED
    return SPECIAL_EXEMPT if exempt else PLAIN


def evaluate_target(name: str, options: argparse.Namespace, tokenizer) -> tuple[str, str]:
    target = load_target(name, tokenizer, options.quick)
    quick = {"max_steps": 2, "assistant_num_layers": 2} if options.quick else {}
    if options.plausible_retain_loss_weight is not None:
        quick["plausible_retain_loss_weight"] = options.plausible_retain_loss_weight
    model, trainer = train_assistant(target, tokenizer, seed=options.seed, **quick)
    splits = target.question_splits()
    # Setting key (α, variant) → uld_logits' arguments after the two logits.
    keys = [(alpha, PLAIN) for alpha in ALPHAS]
    keys += [(alpha, MASS_WEIGHTED) for alpha in MASS_WEIGHTED_ALPHAS]
    keys += [(alpha, ONE_SIDED) for alpha in ONE_SIDED_ALPHAS]
    keys += [(alpha, WITH_MARGIN) for alpha in WITH_MARGIN_ALPHAS]
    keys += [(alpha, SPECIAL_EXEMPT) for alpha in SPECIAL_EXEMPT_ALPHAS]
    special = sorted(set(tokenizer.all_special_ids))
    settings = {
        (alpha, variant): (
            alpha,
            model.plausibility_threshold,
            model.min_tokens_to_keep,
            None,
            variant == MASS_WEIGHTED,
            variant in (ONE_SIDED, WITH_MARGIN),
            SUBTRACTION_MARGIN if variant == WITH_MARGIN else 0.0,
            special if variant == SPECIAL_EXEMPT else [],
        )
        for alpha, variant in keys
    }
    ratios = probability_ratios(model, tokenizer, splits, settings)
    generated: dict[tuple[float, str], dict[str, list[str]]] = {}
    for alpha, variant in [(0.0, PLAIN), *keys]:
        model.assistant_weight = alpha
        model.weight_by_assistant_mass = variant == MASS_WEIGHTED
        model.one_sided_subtraction = variant in (ONE_SIDED, WITH_MARGIN)
        model.subtraction_margin = SUBTRACTION_MARGIN if variant == WITH_MARGIN else 0.0
        model.exempt_token_ids = special if variant == SPECIAL_EXEMPT else []
        generated[alpha, variant] = {
            split: greedy_answers(
                model, tokenizer, [q for q, _ in pairs], max_new_tokens=MAX_NEW_TOKENS, description=f"α={alpha}"
            )
            for split, pairs in splits.items()
        }

    def text_columns(key: tuple[float, str]) -> list[str]:
        columns = []
        for split in ("forget", "paraphrased forget (unseen)", "retain"):
            answers = [a for _, a in splits[split]]
            hits = sum(
                embedded_fact(a).lower() in g.lower() for a, g in zip(answers, generated[key][split], strict=True)
            )
            columns.append(f"{hits}/{len(answers)}")
        heldout = generated[key]["held-out utility"]
        columns.append(f"{sum(map(states_heldout_fact, target.heldout, heldout))}/{len(heldout)}")
        for split in ("retain", "held-out utility"):
            before, after = generated[0.0, PLAIN][split], generated[key][split]
            columns.append(f"{sum(a == b for a, b in zip(before, after, strict=True))}/{len(before)}")
        forgotten = generated[key]["forget"] + generated[key]["paraphrased forget (unseen)"]
        columns.append(f"{sum(map(degenerate, forgotten))}/{len(forgotten)}")
        return columns

    header = [
        "α",
        *splits,
        "forget: fact stated",
        "paraphrased: fact stated",
        "retain: fact stated",
        "held-out: fact stated",
        "retain: answer unchanged",
        "held-out: answer unchanged",
        "forget + paraphrased: degenerate",
    ]
    sidecar = trainer.build_sidecar()
    default_key = (sidecar.assistant_weight, default_variant(sidecar, special))
    if default_key not in keys:
        raise ValueError(f"The library's subtraction {default_key} is none of this table's rows; add it to the rows.")
    rows = [["0 (target)", *["1.000"] * len(splits), *text_columns((0.0, PLAIN))]]
    rows += [
        [f"{alpha:g}{variant}{' (default)' if (alpha, variant) == default_key else ''}"]
        + [f"{ratios[alpha, variant][s]:.3f}" for s in splits]
        + text_columns((alpha, variant))
        for alpha, variant in keys
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
        f"{assistant_summary(trainer)}. The target's answer probability on the forget rows, read before training: "
        f"{sidecar.training['target_forget_probability']:.3f} (memorised at ≥ "
        f"{sidecar.training['memorised_forget_probability']:g}); the library's subtraction for it: row '(default)'. "
        f"Probability columns: unlearned ÷ target; greedy answers of {MAX_NEW_TOKENS} new tokens. Commit {commit()}."
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

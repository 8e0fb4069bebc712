"""Choose ULD's assistant weight α by measurement, on a target that knows its facts and on one that memorised them.

For each target one ULD assistant is trained at the library's defaults (`UnlearnConfig(output_dir=...)`: lr 3e-3,
constant after warm-up, K = a quarter of the layers, trained until converged), then the unlearned model
`target − α · f(assistant)` (the default plausibility filter) is scored at several α:

- `demo`: SmolLM2-135M-Instruct as shipped; forget 20 European capitals, keep 20 other capitals (a topic it knows).
- `memorised`: SmolLM2 fine-tuned on every weight on 32 fictitious people until its mean answer probability is at
  least 0.95 (shared with `filter_definitions.py`, cached); forget 16 of them, keep 16. TOFU's situation.

Reported per split (forget, the forget questions paraphrased and never trained on, retain, held-out general
knowledge from `benchmarks/data/general_knowledge_heldout.jsonl`): the answer probability `exp(−mean NLL)` of the
unlearned model divided by the target's, averaged over questions; and, read as generated text, how many greedy
answers state the fact (the answer's last phrase), or for held-out questions how many greedy answers are unchanged.

    python benchmarks/assistant_weight.py            # about 15 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/assistant_weight.py --quick    # tiny random model, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import QUESTION_ANSWER, render_row, tokenize_row
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.evaluation import greedy_answers
from unlearn_peft.logit_difference import uld_logits
from unlearn_peft.sources import embedded_fact, embedded_rows
from unlearn_peft.testing import tiny_random_llama

try:
    from ._common import append_results, commit, markdown_table
    from .filter_definitions import HELDOUT, TARGETS, memorised_target
except ImportError:  # run as a script
    from _common import append_results, commit, markdown_table
    from filter_definitions import HELDOUT, TARGETS, memorised_target

ALPHAS = (1.0, 0.75, 0.6, 0.5, 0.4, 0.25)
MAX_NEW_TOKENS = 24


@torch.no_grad()
def answer_log_probs(model: ULDModel, tokenizer, question: str, answer: str, alphas) -> dict[float, float]:
    """Mean answer-token log-probability under the target (key 0.0) and the unlearned model at each α."""
    rendered = render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "benchmark", 0)
    prompt_ids, completion_ids = tokenize_row(rendered, tokenizer)
    input_ids = torch.tensor([prompt_ids + completion_ids])
    answer_positions = slice(len(prompt_ids) - 1, -1)
    target = model.target(input_ids).logits[0, answer_positions].float()
    assistant = model.assistant(input_ids).logits[0, answer_positions].float()
    targets = torch.tensor(completion_ids)[:, None]

    def mean_log_prob(logits: torch.Tensor) -> float:
        return float(torch.log_softmax(logits, dim=-1).gather(-1, targets).mean())

    scores = {0.0: mean_log_prob(target)}
    for alpha in alphas:
        filtered = uld_logits(target, assistant, alpha, model.plausibility_threshold, model.min_tokens_to_keep)
        scores[alpha] = mean_log_prob(filtered)
    return scores


def evaluate_target(name: str, options: argparse.Namespace, tokenizer, heldout: list[dict]) -> tuple[str, str]:
    forget_name, retain_name = TARGETS[name]
    forget, retain = embedded_rows(forget_name), embedded_rows(retain_name)
    if options.quick:
        forget, retain, heldout = forget[:2], retain[:2], heldout[:2]
    qa = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
    if name == "memorised":
        base, probability = memorised_target(tokenizer, options.quick, qa(forget + retain))
        described = (
            f"fine-tuned until its mean answer probability on all {len(forget + retain)} rows was {probability:.3f}"
        )
    elif options.quick:
        base, described = tiny_random_llama(tokenizer), "tiny random model"
    else:
        base, described = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.float32), "as is"
    with tempfile.TemporaryDirectory() as workdir:
        quick = {"max_steps": 2, "assistant_num_layers": 2} if options.quick else {}
        args = UnlearnConfig(
            output_dir=workdir, save_strategy="no", report_to="none", use_cpu=True, logging_steps=25, seed=0, **quick
        )
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
    ratios: dict[float, dict[str, float]] = {alpha: {} for alpha in ALPHAS}
    for split, pairs in splits.items():
        scored = [answer_log_probs(model, tokenizer, q, a, ALPHAS) for q, a in pairs]
        for alpha in ALPHAS:
            # Ratio of length-normalised answer probabilities exp(mean log p), averaged over questions.
            ratios[alpha][split] = sum(math.exp(s[alpha] - s[0.0]) for s in scored) / len(scored)
    generated: dict[float, dict[str, list[str]]] = {}
    for alpha in (0.0, *ALPHAS):
        model.assistant_weight = alpha
        generated[alpha] = {
            split: greedy_answers(
                model, tokenizer, [q for q, _ in pairs], max_new_tokens=MAX_NEW_TOKENS, description=f"α={alpha}"
            )
            for split, pairs in splits.items()
        }

    def text_columns(alpha: float) -> list[str]:
        columns = []
        for split in ("forget", "paraphrased forget (unseen)", "retain"):
            answers = [a for _, a in splits[split]]
            hits = sum(
                embedded_fact(a).lower() in g.lower() for a, g in zip(answers, generated[alpha][split], strict=True)
            )
            columns.append(f"{hits}/{len(answers)}")
        unchanged = sum(
            a == b
            for a, b in zip(generated[0.0]["held-out utility"], generated[alpha]["held-out utility"], strict=True)
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
    rows = [["0 (target)", *["1.000"] * len(splits), *text_columns(0.0)]]
    rows += [[f"{alpha:g}", *[f"{ratios[alpha][s]:.3f}" for s in splits], *text_columns(alpha)] for alpha in ALPHAS]
    losses = [entry for entry in trainer.state.log_history if "loss_forget" in entry][-1]
    notes = (
        f"Target: SmolLM2-135M-Instruct {described}. Forget {len(forget)}, retain {len(retain)}, held-out "
        f"{len(heldout)} questions; filter τ = {model.plausibility_threshold:g}, floor {model.min_tokens_to_keep}. "
        f"Assistant at the library defaults: {trainer.state.global_step} steps, converged: "
        f"{'yes' if trainer.convergence_summary.get('converged') else 'no'}, "
        f"loss_forget {float(losses['loss_forget']):.3f}, loss_retain {float(losses['loss_retain']):.3f}. "
        f"Probability columns: unlearned ÷ target; greedy answers of {MAX_NEW_TOKENS} new tokens. Commit {commit()}."
    )
    return markdown_table(header, rows), notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model and 2 steps; no RESULTS.md.")
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS), help="Which targets.")
    options = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    heldout = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()]
    for name in options.targets:
        table, notes = evaluate_target(name, options, tokenizer, heldout)
        print(f"\n{name} target\n{table}\n{notes}", flush=True)
        if not options.quick:
            append_results(
                f"ULD's assistant weight α, {name} target, SmolLM2-135M-Instruct, library defaults", table, notes
            )


if __name__ == "__main__":
    main()

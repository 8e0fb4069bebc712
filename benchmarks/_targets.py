"""What `filter_definitions.py` and `assistant_weight.py` share: the two targets, training, scoring, command line.

- `demo`: SmolLM2-135M-Instruct as shipped; forget 20 European capitals, keep 20 other capitals (a topic it knows).
- `memorised`: SmolLM2 fine-tuned on every weight on 32 fictitious people until its mean answer probability is at
  least 0.95 (cached between runs); forget 16 of them, keep 16. This is TOFU's situation: one token with p ≈ 1 at
  most answer positions.
- `near-threshold` (only when named in `--targets`): the same, fine-tuned only until the first epoch at which its
  mean answer probability reaches 0.9, the library's `memorised_forget_probability`: the target on which the
  library's choice of subtraction is least sure.

Both are scored on the forget questions, the same questions paraphrased (never trained on), the retain questions
and held-out general knowledge (`benchmarks/data/general_knowledge_heldout.jsonl`).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import QUESTION_ANSWER, render_row, tokenize_row
from unlearn_peft.embedded import cache_dir, smollm2_checkpoint
from unlearn_peft.logit_difference import uld_logits
from unlearn_peft.sources import embedded_rows
from unlearn_peft.testing import memorize, tiny_random_llama

try:
    from ._common import append_results
except ImportError:  # imported by a script run directly
    from _common import append_results

HELDOUT = Path(__file__).parent / "data" / "general_knowledge_heldout.jsonl"
MEMORISED_PROBABILITY = 0.95
NEAR_THRESHOLD_PROBABILITY = 0.9
TARGETS = {
    "demo": ("european_capitals_forget", "world_capitals_retain"),
    "memorised": ("fictitious_people_forget", "fictitious_people_retain"),
    "near-threshold": ("fictitious_people_forget", "fictitious_people_retain"),
}
DEFAULT_TARGETS = ["demo", "memorised"]


@dataclass
class Target:
    """A target model, its forget / retain rows, the held-out rows, and how the model was made (for the notes)."""

    model: PreTrainedModel
    described: str
    forget: list[dict]
    retain: list[dict]
    heldout: list[dict]

    def question_splits(self) -> dict[str, list[tuple[str, str]]]:
        """Split name → (question, answer) pairs."""
        return {
            "forget": [(r["question"], r["answer"]) for r in self.forget],
            "paraphrased forget (unseen)": [(r["paraphrased_question"], r["answer"]) for r in self.forget],
            "retain": [(r["question"], r["answer"]) for r in self.retain],
            "held-out utility": [(r["question"], r["answer"]) for r in self.heldout],
        }


def question_answers(rows: list[dict]) -> list[dict[str, str]]:
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def memorised_model(
    name: str, rows: list[dict], tokenizer, quick: bool, min_answer_probability: float, device: str = "cpu"
) -> tuple[PreTrainedModel, float]:
    """SmolLM2 fine-tuned until it has memorised `rows`, cached under `name` in the unlearn_peft cache directory and
    rebuilt when missing (a tiny random model, one epoch, with `quick`); returns it, on `device`, and its mean answer
    probability."""
    if quick:
        model = tiny_random_llama(tokenizer).to(device)
        return model, memorize(model, tokenizer, rows, min_answer_probability=0.0, max_epochs=1)
    directory = cache_dir() / "benchmarks" / name
    if (directory / "memorised.json").exists():
        probability = json.loads((directory / "memorised.json").read_text())["answer_probability"]
        return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).to(device).eval(), probability
    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.float32).to(device)
    probability = memorize(model, tokenizer, rows, min_answer_probability=min_answer_probability)
    model.save_pretrained(directory)
    (directory / "memorised.json").write_text(json.dumps({"answer_probability": probability}) + "\n")
    return model, probability


def memorised_target(
    tokenizer, quick: bool, rows: list[dict], min_answer_probability: float = MEMORISED_PROBABILITY
) -> tuple[PreTrainedModel, float]:
    """SmolLM2 fine-tuned until it has memorised `rows` (cached in the unlearn_peft cache directory)."""
    name = f"smollm2-memorised-fictitious-people-p{min_answer_probability}"
    return memorised_model(name, rows, tokenizer, quick, min_answer_probability)


def load_target(name: str, tokenizer: PreTrainedTokenizerBase, quick: bool) -> Target:
    """The `name` target (a tiny random model and 2 rows per split with `quick`)."""
    forget_name, retain_name = TARGETS[name]
    forget, retain = embedded_rows(forget_name), embedded_rows(retain_name)
    heldout = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()]
    if quick:
        forget, retain, heldout = forget[:2], retain[:2], heldout[:2]
    if name in ("memorised", "near-threshold"):
        goal = MEMORISED_PROBABILITY if name == "memorised" else NEAR_THRESHOLD_PROBABILITY
        model, probability = memorised_target(tokenizer, quick, question_answers(forget + retain), goal)
        described = (
            f"fine-tuned until its mean answer probability on all {len(forget + retain)} rows was {probability:.3f}"
        )
    elif quick:
        model, described = tiny_random_llama(tokenizer), "tiny random model"
    else:
        model, described = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.float32), "as is"
    return Target(model, described, forget, retain, heldout)


def train_assistant(target: Target, tokenizer, **settings) -> tuple[ULDModel, UnlearnTrainer]:
    """Train a ULD assistant on `target` (the library defaults, overridden by `settings`) and load the unlearned
    model on the target's weights; the trainer is returned for its logged losses."""
    with tempfile.TemporaryDirectory() as workdir:
        arguments = dict(save_strategy="no", report_to="none", use_cpu=True, logging_steps=25, seed=0)
        args = UnlearnConfig(output_dir=workdir, **{**arguments, **settings})
        trainer = UnlearnTrainer(
            target.model,
            args=args,
            forget_dataset=question_answers(target.forget),
            retain_dataset=question_answers(target.retain),
            processing_class=tokenizer,
        )
        trainer.train()
        trainer.save_model(workdir)
        return ULDModel.from_pretrained(workdir, base_model=target.model), trainer


def assistant_summary(trainer: UnlearnTrainer) -> str:
    """Steps, convergence and the last logged losses of a trained assistant, for a table's notes."""
    losses = [entry for entry in trainer.state.log_history if "loss_forget" in entry][-1]
    converged = "yes" if trainer.convergence_summary.get("converged") else "no"
    return (
        f"{trainer.state.global_step} steps, converged: {converged}, loss_forget {float(losses['loss_forget']):.3f}, "
        f"loss_retain {float(losses['loss_retain']):.3f}"
    )


def run_on_targets(
    description: str,
    extra_arguments: Callable[[argparse.ArgumentParser], None],
    evaluate: Callable[[str, argparse.Namespace, PreTrainedTokenizerBase], tuple[str, str]],
    title: str,
) -> None:
    """The command line shared by the scripts: `--quick`, `--targets`, their own arguments; then for each target
    `evaluate(target_name, options, tokenizer) -> (table, notes)`, printed and appended to RESULTS.md under
    `title.format(name=target_name)` (not with `--quick`)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model and 2 steps; no RESULTS.md.")
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=list(TARGETS),
        default=DEFAULT_TARGETS,
        help="Which targets (default: demo, memorised).",
    )
    extra_arguments(parser)
    options = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    for name in options.targets:
        table, notes = evaluate(name, options, tokenizer)
        print(f"\n{name} target\n{table}\n{notes}", flush=True)
        if not options.quick:
            append_results(title.format(name=name), table, notes)


@torch.no_grad()
def _answer_log_probs(
    model: ULDModel, tokenizer, question: str, answer: str, settings: Mapping[Hashable, tuple]
) -> tuple[float, dict[Hashable, float]]:
    """Mean answer-token log-probability under the target, and under the unlearned model for each (α, τ, floor)."""
    rendered = render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "benchmark", 0)
    prompt_ids, completion_ids = tokenize_row(rendered, tokenizer)
    input_ids = torch.tensor([prompt_ids + completion_ids])
    answer_positions = slice(len(prompt_ids) - 1, -1)
    target = model.target(input_ids).logits[0, answer_positions].float()
    assistant = model.assistant(input_ids).logits[0, answer_positions].float()
    answer_ids = torch.tensor(completion_ids)[:, None]

    def mean_log_prob(logits: torch.Tensor) -> float:
        return float(torch.log_softmax(logits, dim=-1).gather(-1, answer_ids).mean())

    unlearned = {key: mean_log_prob(uld_logits(target, assistant, *setting)) for key, setting in settings.items()}
    return mean_log_prob(target), unlearned


def probability_ratios(
    model: ULDModel, tokenizer, splits: dict[str, list[tuple[str, str]]], settings: Mapping[Hashable, tuple]
) -> dict[Hashable, dict[str, float]]:
    """Setting key → split → the unlearned model's length-normalised answer probability `exp(mean log p)` divided by
    the target's, averaged over the split's questions. A setting is `(α, τ, floor)` of `uld_logits`."""
    ratios: dict[Hashable, dict[str, float]] = {key: {} for key in settings}
    for split, pairs in splits.items():
        scored = [_answer_log_probs(model, tokenizer, q, a, settings) for q, a in pairs]
        for key in settings:
            ratios[key][split] = sum(math.exp(unlearned[key] - target) for target, unlearned in scored) / len(scored)
    return ratios

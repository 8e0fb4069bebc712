"""ULD's TOFU augmentations, judged by unlearning on a target that has memorised TOFU rows.

TOFU's `*_perturbed` rows carry paraphrased answers and questions and perturbed (wrong) answers; the paper adds
(question, paraphrased answer) and (paraphrased question, answer) rows to the forget set and the perturbed answers
(here labelled on their wrong tokens only) to the retain set. This compares the unlearned models with and without
them (the library's default is without).

- Target: SmolLM2-135M-Instruct fine-tuned on every weight on TOFU's forget01 (40 rows, 2 authors) and 40 retain
  rows (2 other authors: the first 40 rows of `retain_perturbed`) until its mean answer probability is at least 0.9.
- Retain model: the same fine-tuning on the 40 retain rows only, TOFU's reference for forget quality.
  Both are cached in the unlearn_peft cache directory and rebuilt when missing.
- ULD: `UnlearnTrainer` at the library's defaults (forget = the 40 forget rows with their TOFU columns, retain = the
  40 retain rows as question-answer pairs), and with the paper's augmentations; `ULDModel` at its defaults, and the
  default assistant also with `weight_by_assistant_mass`.

Columns: forget quality (TOFU: KS test of the forget truth ratios against the retain model's), answer probability
divided by the target's (forget, forget asked with the paraphrased question, retain, held-out general knowledge),
ROUGE-L recall of the greedy answers (forget, retain), and the assistant's steps and convergence.

    python benchmarks/tofu_augmentations.py           # about 40 minutes on 2 CPU cores; appends to RESULTS.md
    python benchmarks/tofu_augmentations.py --quick   # tiny random model, 2 rows, 2 steps (CI)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedModel

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.evaluation.generation import greedy_answers
from unlearn_peft.evaluation.probability import answer_probabilities, answer_probability
from unlearn_peft.evaluation.rouge import rouge_l_recall
from unlearn_peft.evaluation.tofu import forget_quality, truth_ratio

try:
    from ._common import TOFU_FIXTURES, append_results, commit, markdown_table
    from ._targets import memorised_model
except ImportError:  # run as a script
    from _common import TOFU_FIXTURES, append_results, commit, markdown_table
    from _targets import memorised_model

HELDOUT = Path(__file__).parent / "data" / "general_knowledge_heldout.jsonl"
MEMORISED_PROBABILITY = 0.9
TRAININGS: dict[str, dict[str, Any]] = {
    "defaults (augmentations off)": {},
    "the paper's augmentations": {
        "augment_forget_with_paraphrases": True,
        "augment_retain_with_perturbed": True,
    },
}
"""Assistants trained, by name: `UnlearnConfig` settings over the library's defaults."""
EVALUATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "ULD, defaults": ("defaults (augmentations off)", {}),
    "ULD, defaults, weight_by_assistant_mass": ("defaults (augmentations off)", {"weight_by_assistant_mass": True}),
    "ULD, the paper's augmentations": ("the paper's augmentations", {}),
}
"""Table rows: (assistant, `ULDModel` attributes set for inference)."""


def read_rows(path: Path, count: int | None = None) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines[:count]]


def question_answers(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"question": row["question"], "answer": row["answer"]} for row in rows]


def fine_tuned(name: str, rows: list[dict[str, str]], tokenizer, quick: bool) -> tuple[PreTrainedModel, float]:
    """SmolLM2 fine-tuned until it has memorised `rows`, cached under `name` (a tiny random model with `--quick`)."""
    return memorised_model(f"smollm2-{name}-p{MEMORISED_PROBABILITY}", rows, tokenizer, quick, MEMORISED_PROBABILITY)


def forget_truth_ratios(model, tokenizer, forget: list[dict[str, Any]]) -> list[float]:
    """TOFU's per-question truth ratio on the forget rows: perturbed answers against the paraphrased answer."""
    return [
        truth_ratio(
            [answer_probability(model, tokenizer, row["question"], wrong) for wrong in row["perturbed_answer"]],
            answer_probability(model, tokenizer, row["question"], row["paraphrased_answer"]),
        )
        for row in forget
    ]


def probabilities(model, tokenizer, pairs: list[tuple[str, str]]) -> list[float]:
    return answer_probabilities(model, tokenizer, pairs)


def scores(model, tokenizer, splits: dict[str, list[tuple[str, str]]], forget, retain_ratios) -> dict[str, Any]:
    """Everything a table row needs, for one model."""
    ratios = forget_truth_ratios(model, tokenizer, forget)
    result: dict[str, Any] = {
        "forget quality": forget_quality(ratios, retain_ratios) if retain_ratios is not None else None,
        "truth ratios": ratios,
        "probabilities": {split: probabilities(model, tokenizer, pairs) for split, pairs in splits.items()},
    }
    for split in ("forget", "retain"):
        questions = [question for question, _ in splits[split]]
        answers = greedy_answers(model, tokenizer, questions, max_new_tokens=64, description=f"Generating {split}")
        recalls = [rouge_l_recall(text, answer) for text, (_, answer) in zip(answers, splits[split], strict=True)]
        result[f"{split} ROUGE-L recall"] = sum(recalls) / len(recalls)
    return result


def train_variant(target, tokenizer, forget, retain, settings, options) -> tuple[ULDModel, str]:
    with tempfile.TemporaryDirectory() as workdir:
        arguments = dict(save_strategy="no", report_to="none", use_cpu=True, logging_steps=25, seed=0)
        if options.quick:
            arguments.update(max_steps=2, assistant_num_layers=1)
        trainer = UnlearnTrainer(
            target,
            args=UnlearnConfig(output_dir=workdir, **{**arguments, **settings}),
            forget_dataset=forget,
            retain_dataset=question_answers(retain),
            processing_class=tokenizer,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        trainer.save_model(workdir)
        summary = trainer.convergence_summary
        data = trainer.dataset_summary
        described = (
            f"{data['forget_examples']} forget / {data['retain_examples']} retain examples, "
            f"{trainer.state.global_step} steps, converged: {'yes' if summary.get('converged') else 'no'} "
            f"(forget NLL {summary['final_loss_forget']:.3f}, retain KL "
            f"{summary['final_loss_retain']:.3f}), {seconds:.0f} s"
        )
        return ULDModel.from_pretrained(workdir, base_model=target), described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model, 2 rows, 2 steps; no RESULTS.md.")
    options = parser.parse_args()
    count = 2 if options.quick else None
    forget = read_rows(TOFU_FIXTURES / "forget01_perturbed.json", count)
    retain = read_rows(TOFU_FIXTURES / "retain_perturbed_head40.json", count)
    heldout = read_rows(HELDOUT, count)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    target, target_probability = fine_tuned(
        "tofu-forget01-retain40", question_answers(forget + retain), tokenizer, options.quick
    )
    retain_model, retain_probability = fine_tuned("tofu-retain40", question_answers(retain), tokenizer, options.quick)
    splits = {
        "forget": [(row["question"], row["answer"]) for row in forget],
        "forget, paraphrased question": [(row["paraphrased_question"], row["answer"]) for row in forget],
        "retain": [(row["question"], row["answer"]) for row in retain],
        "held-out general knowledge": [(row["question"], row["answer"]) for row in heldout],
    }
    retain_ratios = forget_truth_ratios(retain_model, tokenizer, forget)
    rows_scored = {
        "target": (scores(target, tokenizer, splits, forget, retain_ratios), "fine-tuned on forget + retain"),
        "retain model": (scores(retain_model, tokenizer, splits, forget, retain_ratios), "never saw the forget rows"),
    }
    trained = {}
    for name, settings in TRAININGS.items():
        trained[name] = train_variant(target, tokenizer, forget, retain, settings, options)
        print(f"{name}: {trained[name][1]}", flush=True)
    for row_name, (training, inference) in EVALUATIONS.items():
        unlearned, described = trained[training]
        for attribute, value in {"weight_by_assistant_mass": False, **inference}.items():
            setattr(unlearned, attribute, value)
        rows_scored[row_name] = (scores(unlearned, tokenizer, splits, forget, retain_ratios), described)

    target_probabilities = rows_scored["target"][0]["probabilities"]

    def ratio(result: dict[str, Any], split: str) -> str:
        values = [
            after / before
            for after, before in zip(result["probabilities"][split], target_probabilities[split], strict=True)
        ]
        return f"{sum(values) / len(values):.3f}"

    header = ["model", "forget quality", *[f"{split} (÷ target)" for split in splits]]
    header += ["forget ROUGE-L recall", "retain ROUGE-L recall", "notes"]
    table_rows = []
    for name, (result, described) in rows_scored.items():
        quality = result["forget quality"]
        table_rows.append(
            [
                name,
                "n/a" if quality is None else f"{quality:.3g}",
                *[ratio(result, split) for split in splits],
                f"{result['forget ROUGE-L recall']:.3f}",
                f"{result['retain ROUGE-L recall']:.3f}",
                described,
            ]
        )
    table = markdown_table(header, table_rows)
    notes = (
        f"Target: mean answer probability {target_probability:.3f} on its {len(forget + retain)} rows; retain model: "
        f"{retain_probability:.3f} on its {len(retain)}. Forget quality: p-value of the two-sample KS test between "
        "the forget truth ratios of the model and of the retain model (1 = indistinguishable; the retain model's "
        "own row is 1 by definition). Probabilities: mean over questions of the model's length-normalised answer "
        f"probability divided by the target's. Commit {commit()}."
    )
    print(f"\n{table}\n\n{notes}")
    if not options.quick:
        append_results("ULD's TOFU augmentations on a target that memorised TOFU rows", table, notes)


if __name__ == "__main__":
    main()

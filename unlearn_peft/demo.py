"""`unlearn-peft demo` (or `python -m unlearn_peft.demo`): unlearn European capitals from SmolLM2-135M on CPU, offline.

It converts the embedded SmolLM2-135M-Instruct once (see `unlearn_peft.embedded`), trains a ULD assistant to forget
20 question-answer pairs about European capitals while keeping 20 about other capitals, and prints the answer
probabilities before and after unlearning — including on paraphrased forget questions that training never saw —
and a few generations side by side. It writes the adapter and `demo.png` to `--output-dir`. The settings are those
of `recipes/demo/smollm2.yaml`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .command_line import OneLineArgumentParser
from .config import UnlearnConfig
from .evaluation import answer_probabilities, greedy_answers
from .modeling import ULDModel
from .sources import embedded_fact, embedded_rows, resolve_model_name
from .trainer import UnlearnTrainer

FORGET_DATA, RETAIN_DATA = "european_capitals_forget", "world_capitals_retain"
# Kept equal to recipes/demo/smollm2.yaml (a test checks it).
DEMO_SETTINGS: dict[str, Any] = {
    "method": "uld",
    "augment_forget_with_paraphrases": False,
    "per_device_train_batch_size": 4,
    "logging_steps": 25,
    "seed": 0,
}
SHOWN_GENERATIONS = 4


def _qa(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"question": row["question"], "answer": row["answer"]} for row in rows]


def mean_probabilities(model, tokenizer, forget, retain) -> dict[str, float]:
    def mean(rows, question_key):
        values = answer_probabilities(model, tokenizer, [(row[question_key], row["answer"]) for row in rows])
        return sum(values) / len(values)

    return {
        "forget": mean(forget, "question"),
        "forget (paraphrased, unseen)": mean(forget, "paraphrased_question"),
        "retain": mean(retain, "question"),
    }


def facts_stated(model, tokenizer, rows, question_key: str, description: str) -> tuple[list[str], int]:
    """Greedy answers to each row's question, and how many still name the row's fact (the capital)."""
    answers = greedy_answers(
        model, tokenizer, [row[question_key] for row in rows], max_new_tokens=16, description=description
    )
    facts = [embedded_fact(row["answer"]).lower() for row in rows]
    return answers, sum(fact in answer.lower() for fact, answer in zip(facts, answers, strict=True))


def stated_counts(model, tokenizer, forget, retain) -> dict[str, int]:
    return {
        "forget": facts_stated(model, tokenizer, forget, "question", "Answering forget questions")[1],
        "forget (paraphrased, unseen)": facts_stated(
            model, tokenizer, forget, "paraphrased_question", "Answering paraphrased forget questions"
        )[1],
        "retain": facts_stated(model, tokenizer, retain, "question", "Answering retain questions")[1],
    }


def write_plot(before: dict[str, float], after: dict[str, float], path: Path) -> None:
    # Imported here: the headless backend must be chosen before pyplot loads, and only reports need it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(before)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    positions = range(len(names))
    axis.bar([p - 0.2 for p in positions], [before[n] for n in names], 0.4, label="before")
    axis.bar([p + 0.2 for p in positions], [after[n] for n in names], 0.4, label="after ULD")
    axis.set_xticks(list(positions), names, fontsize=8)
    axis.set_ylabel("answer probability exp(-mean NLL)")
    axis.set_ylim(0, 1)
    axis.set_title("SmolLM2-135M: unlearning European capitals")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the demo; returns the probabilities and the counts of greedy answers naming the capital, before/after."""
    parser = OneLineArgumentParser(
        prog="unlearn-peft demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="outputs/demo-smollm2-uld", help="Where the adapter and plot go.")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=-1,
        help="Step budget (default: the library's, min_train_steps; training stops earlier once converged).",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="Learning rate of the LoRA (default: the library's, 3e-3)."
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    started = time.time()
    output_dir = Path(options.output_dir)
    checkpoint = resolve_model_name("embedded:smollm2")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    forget, retain = embedded_rows(FORGET_DATA), embedded_rows(RETAIN_DATA)
    before = mean_probabilities(model, tokenizer, forget, retain)
    stated_before = stated_counts(model, tokenizer, forget, retain)
    shown = forget[:SHOWN_GENERATIONS] + retain[:2]
    questions = [row["question"] for row in shown[:SHOWN_GENERATIONS]] + [
        shown[0]["paraphrased_question"],
        *[row["question"] for row in shown[SHOWN_GENERATIONS:]],
    ]
    generations_before = greedy_answers(model, tokenizer, questions, max_new_tokens=16)

    settings = {**DEMO_SETTINGS, "max_steps": options.max_steps, "learning_rate": options.learning_rate}
    # The demo runs the library's ULD defaults: lr 3e-3 until the assistant converged, within an 800-step budget.
    args = UnlearnConfig(output_dir=str(output_dir), save_strategy="no", report_to="none", use_cpu=True, **settings)
    trainer = UnlearnTrainer(
        model,
        args=args,
        forget_dataset=_qa(forget),
        retain_dataset=_qa(retain),
        processing_class=tokenizer,
        forget_dataset_name=f"embedded:{FORGET_DATA}",
        retain_dataset_name=f"embedded:{RETAIN_DATA}",
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    unlearned = ULDModel.from_pretrained(output_dir, base_model=model)
    after = mean_probabilities(unlearned, tokenizer, forget, retain)
    stated_after = stated_counts(unlearned, tokenizer, forget, retain)
    generations_after = greedy_answers(unlearned, tokenizer, questions, max_new_tokens=16)
    write_plot(before, after, output_dir / "demo.png")

    summary = trainer.convergence_summary
    verdict = "converged" if summary["converged"] else "did NOT converge"
    print(
        f"\nULD assistant {verdict} after {summary['steps']} of at most {summary['step_budget']} steps: forget NLL "
        f"{summary['final_loss_forget']:.3f}, retain KL(uniform ‖ assistant) {summary['final_loss_retain']:.3f}."
    )
    print("\nAnswer probability exp(-mean NLL), mean over 20 questions each:")
    print(f"{'split':<30} {'before':>8} {'after':>8} {'ratio':>7}")
    for split, value in before.items():
        print(f"{split:<30} {value:8.3f} {after[split]:8.3f} {after[split] / value:7.3f}")
    print("\nGreedy answers that name the capital (out of 20):")
    print(f"{'split':<30} {'before':>8} {'after':>8}")
    for split, count in stated_before.items():
        print(f"{split:<30} {count:>8} {stated_after[split]:>8}")
    print("\nGreedy answers (first 4 forget questions, 1 paraphrased forget question, 2 retain questions):")
    for question, old, new in zip(questions, generations_before, generations_after, strict=True):
        print(f"Q: {question}\n   before: {old}\n   after:  {new}")
    print(f"\nAdapter and demo.png written to {output_dir} in {time.time() - started:.0f} s.")
    return {
        "probability_before": before,
        "probability_after": after,
        "stated_before": stated_before,
        "stated_after": stated_after,
    }


if __name__ == "__main__":
    main()

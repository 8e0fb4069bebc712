"""ULD training settings on the demo's data, judged on generated text: how many greedy answers still name the capital.

Each setting trains a ULD assistant on SmolLM2-135M-Instruct (forget 20 European capitals, keep 20 other capitals,
K = a quarter of the layers, batch 4, early stopping off), then counts the greedy answers that name the capital on
the forget questions, their unseen paraphrases and the retain questions, at α = 0.75 and α = 0.5.

    python benchmarks/demo_sweep.py '[{"learning_rate": 1e-3, "max_steps": 300}]'   # minutes per setting
    python benchmarks/demo_sweep.py --quick                                          # tiny random model (CI)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.evaluation import greedy_answers
from unlearn_peft.sources import embedded_fact, embedded_rows
from unlearn_peft.testing import tiny_random_llama

try:
    from ._common import append_results, markdown_table
except ImportError:  # run as a script
    from _common import append_results, markdown_table


def stated(model, tokenizer, rows, key: str) -> int:
    answers = greedy_answers(model, tokenizer, [row[key] for row in rows], max_new_tokens=14)
    return sum(
        embedded_fact(row["answer"]).lower() in answer.lower() for row, answer in zip(rows, answers, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "settings", nargs="?", default='[{"learning_rate": 1e-3, "max_steps": 300}]', help="JSON list."
    )
    parser.add_argument("--quick", action="store_true", help="Tiny random model, 2 steps, 2 rows; no RESULTS.md.")
    options = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    forget, retain = embedded_rows("european_capitals_forget"), embedded_rows("world_capitals_retain")
    settings_list = json.loads(options.settings)
    if options.quick:
        forget, retain, settings_list = forget[:2], retain[:2], [{"learning_rate": 1e-3, "max_steps": 2}]
    qa = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
    rows = []
    for settings in settings_list:
        if options.quick:
            base = tiny_random_llama(tokenizer)
        else:
            base = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint(), dtype=torch.float32).eval()
        with tempfile.TemporaryDirectory() as workdir:
            args = UnlearnConfig(
                output_dir=workdir,
                save_strategy="no",
                report_to="none",
                use_cpu=True,
                disable_tqdm=True,
                **{
                    "per_device_train_batch_size": 4,
                    "logging_steps": 25,
                    "seed": 0,
                    "stop_when_converged": False,
                    **settings,
                },
            )
            trainer = UnlearnTrainer(
                base, args=args, forget_dataset=qa(forget), retain_dataset=qa(retain), processing_class=tokenizer
            )
            started = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - started
            trainer.save_model(workdir)
            model = ULDModel.from_pretrained(workdir, base_model=base)
        history = [
            f"{entry['step']}: {float(entry['loss_forget']):.2f}/{float(entry['loss_retain']):.2f}"
            for entry in trainer.state.log_history
            if "loss_forget" in entry and "step" in entry
        ]
        counts = {}
        for alpha in (0.0, 0.75, 0.5):
            model.assistant_weight = alpha
            counts[alpha] = [
                stated(model, tokenizer, forget, "question"),
                stated(model, tokenizer, forget, "paraphrased_question"),
                stated(model, tokenizer, retain, "question"),
            ]
        rows.append(
            [
                json.dumps(settings),
                f"{trainer.convergence.forget_mean:.3f} / {trainer.convergence.retain_mean:.3f}",
                *["/".join(str(count) for count in counts[alpha]) for alpha in (0.0, 0.75, 0.5)],
                f"{seconds:.0f}",
                "; ".join(history),
            ]
        )
        print(rows[-1], flush=True)
    header = [
        "settings",
        "final forget NLL / retain KL",
        "base: forget / paraphrased / retain named",
        "α=0.75",
        "α=0.5",
        "training s",
        "step: forget NLL / retain KL (logged means)",
    ]
    table = markdown_table(header, rows)
    print(table)
    if not options.quick:
        append_results(
            "ULD settings on the demo's data, judged by greedy answers, SmolLM2-135M-Instruct",
            table,
            f"Greedy answers naming the capital, out of {len(forget)} forget / {len(forget)} paraphrased forget / "
            f"{len(retain)} retain questions (14 new tokens).",
        )


if __name__ == "__main__":
    main()

"""TOFU scoring speed: one forward pass per answer (the way `evaluate_tofu` scored until 2026-12-04) vs batched.

TOFU's evaluation scores every question's answer, its paraphrase and its five perturbed answers: seven
teacher-forced passes per question, most of an evaluation's time. This measures both ways side by side on the
same pairs (the first questions of `benchmarks/data/tofu/retain_perturbed.json`), on SmolLM2-135M-Instruct and on
a `ULDModel` over it, and states the largest difference in probability between them.

    python benchmarks/tofu_scoring.py            # 20 questions (140 pairs), batch 8 and 16
    python benchmarks/tofu_scoring.py --quick    # tiny random model, 3 questions; does not write RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from unlearn_peft.evaluation import answer_probabilities, answer_probability

try:
    from ._common import append_results, commit, markdown_table
    from .generation import build_models
except ImportError:  # run as a script
    from _common import append_results, commit, markdown_table
    from generation import build_models

RETAIN = Path(__file__).parent / "data" / "tofu" / "retain_perturbed.json"


def scored_pairs(questions: int) -> list[tuple[str, str]]:
    """What `evaluate_tofu` scores for a retain question: the answer, the paraphrase and each perturbed answer."""
    rows = [json.loads(line) for line in RETAIN.read_text(encoding="utf-8").splitlines()[:questions]]
    return [
        (row["question"], answer)
        for row in rows
        for answer in [row["answer"], row["paraphrased_answer"], *row["perturbed_answer"]]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model, 3 questions; no RESULTS.md.")
    parser.add_argument("--questions", type=int, default=20, help="Retain questions scored (7 pairs each).")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16], help="Batched sizes to measure.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda.")
    options = parser.parse_args()
    pairs = scored_pairs(3 if options.quick else options.questions)
    rows, largest_difference = [], 0.0
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer, base, merged, _ = build_models(options.quick, Path(workdir), options.device, torch.float32)
        for name, model in (("base model", base), ("ULDModel", merged)):
            answer_probability(model, tokenizer, *pairs[0])  # warm-up
            started = time.perf_counter()
            one_by_one = [answer_probability(model, tokenizer, question, answer) for question, answer in pairs]
            reference_seconds = time.perf_counter() - started
            rows.append([name, "1 (one pass per pair)", f"{len(pairs) / reference_seconds:.1f}", "1.00×", "0"])
            for batch_size in options.batch_sizes:
                started = time.perf_counter()
                batched = answer_probabilities(model, tokenizer, pairs, batch_size=batch_size)
                seconds = time.perf_counter() - started
                difference = max(abs(a - b) for a, b in zip(batched, one_by_one, strict=True))
                largest_difference = max(largest_difference, difference)
                rows.append(
                    [
                        name,
                        str(batch_size),
                        f"{len(pairs) / seconds:.1f}",
                        f"{reference_seconds / seconds:.2f}×",
                        f"{difference:.1e}",
                    ]
                )
                print(f"{name:<12} batch {batch_size:2d}: {reference_seconds / seconds:.2f}× faster", flush=True)
    table = markdown_table(["model", "batch", "pairs/s", "speed-up", "largest Δ probability"], rows)
    print(table)
    if not options.quick:
        notes = (
            f"{len(pairs)} pairs ({len(pairs) // 7} retain questions × answer, paraphrase, 5 perturbed answers), "
            f"float32, {options.device}. Largest probability difference batched vs one by one: "
            f"{largest_difference:.1e}. Commit {commit()}."
        )
        append_results("TOFU scoring speed: one pass per answer vs batched, SmolLM2-135M-Instruct", table, notes)


if __name__ == "__main__":
    main()

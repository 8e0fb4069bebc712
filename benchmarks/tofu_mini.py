"""TOFU at a size a small machine can run: fine-tune a target and a retain model, unlearn, evaluate, plot.

The TOFU protocol (Maini et al. 2024), shrunk to `--authors` fictitious authors (20 QA each):

1. Target: SmolLM2-135M-Instruct fine-tuned with LoRA (then merged) on every author's QA rows, rendered exactly as
   unlearn_peft renders them (`unlearn_peft.data.tokenize_dataset`: chat template, loss on the answer only).
2. Retain model: the same fine-tuning on the authors minus the `--forget-authors` forget authors.
3. Unlearning of the forget authors from the target with `UnlearnTrainer` (`max_steps`): ULD and the baselines
   GA, GD (ga + nll), NPO+GD, SimNPO and IdkDPO.
4. `evaluate_tofu` on every model: forget = the forget authors' rows (with TOFU's paraphrased and perturbed
   answers), retain / real_authors / world_facts subsets; forget quality against the retain model's evaluation.
   `write_tofu_report` writes the per-model JSONs, `summary.md` and `forget_quality_vs_utility.png`.

Authors: the retain authors are the first `authors − forget_authors` authors of `retain_perturbed.json` (TOFU's
first 20 authors, with paraphrased / perturbed answers); the forget authors are the first ones of
`forget10_perturbed.json` (TOFU's last 20 authors). Every author has 20 consecutive rows.

The fine-tuned target and retain models are cached under `~/.cache/unlearn_peft/tofu_mini/` (or
`$UNLEARN_PEFT_CACHE/tofu_mini/`), keyed by their settings, so re-runs skip fine-tuning.

    python benchmarks/tofu_mini.py                              # TOFU from the Hub; appends to RESULTS.md
    python benchmarks/tofu_mini.py --tofu /path/to/tofu --authors 6   # a local copy of TOFU's JSON files
    python benchmarks/tofu_mini.py --quick                      # tiny random model, fixture rows, seconds (CI)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import TokenBatch, pad_sequences, tokenize_dataset
from unlearn_peft.embedded import cache_dir, smollm2_checkpoint
from unlearn_peft.evaluation import answer_probability, evaluate_tofu, forget_quality, write_tofu_report
from unlearn_peft.sources import load_rows
from unlearn_peft.testing import tiny_random_llama

try:
    from ._common import append_results, markdown_table
except ImportError:  # run as a script
    from _common import append_results, markdown_table

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "tofu"
ROWS_PER_AUTHOR = 20
TOFU_CONFIGS = ("forget10_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (name, method, retain_loss); retain_loss None = the method's default.
METHODS = [
    ("ULD", "uld", None),
    ("GA", "ga", "none"),
    ("GD", "ga", "nll"),
    ("NPO+GD", "npo", "nll"),
    ("SimNPO", "simnpo", "nll"),
    ("IdkDPO", "idk_dpo", "nll"),
]


def causal_lm_inputs(batch: TokenBatch) -> dict[str, torch.Tensor]:
    """A padded batch as the keyword arguments of a causal LM's forward (the loss on the answer tokens)."""
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "labels": batch.labels}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_splits(options: argparse.Namespace) -> dict[str, list[dict]]:
    """Rows of the retain authors, the forget authors and the evaluation subsets."""
    if options.quick:
        files = {
            "forget10_perturbed": FIXTURES / "forget01_perturbed.json",
            "retain_perturbed": FIXTURES / "retain_perturbed_head40.json",
            "real_authors_perturbed": FIXTURES / "real_authors_perturbed_head4.json",
            "world_facts_perturbed": FIXTURES / "world_facts_perturbed_head4.json",
        }
        tofu = {config: read_jsonl(path) for config, path in files.items()}
    else:
        try:
            tofu = {config: load_rows(options.tofu, config, argument="--tofu").to_list() for config in TOFU_CONFIGS}
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(
                f"{error} Pass --tofu locuslab/TOFU (the Hub) or a directory holding {', '.join(TOFU_CONFIGS)} "
                "as <config>.json files."
            ) from error
    retain_authors = options.authors - options.forget_authors
    retain = tofu["retain_perturbed"][: retain_authors * ROWS_PER_AUTHOR]
    forget = tofu["forget10_perturbed"][: options.forget_authors * ROWS_PER_AUTHOR]
    if len(retain) < retain_authors * ROWS_PER_AUTHOR or len(forget) < options.forget_authors * ROWS_PER_AUTHOR:
        raise SystemExit(f"Not enough TOFU rows for {options.authors} authors in {options.tofu}.")
    return {
        "train_retain": retain,
        "train_forget": forget,
        "forget": forget[: options.eval_forget] if options.eval_forget else forget,
        "retain": retain[: options.eval_retain],
        "real_authors": tofu["real_authors_perturbed"][: options.eval_other],
        "world_facts": tofu["world_facts_perturbed"][: options.eval_other],
    }


def qa(rows: list[dict]) -> list[dict[str, str]]:
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def fresh_base(options: argparse.Namespace, tokenizer):
    if options.quick:
        return tiny_random_llama(tokenizer)
    return AutoModelForCausalLM.from_pretrained(smollm2_checkpoint())


def fine_tune(rows: list[dict], options: argparse.Namespace, tokenizer, destination: Path, workdir: Path) -> float:
    """LoRA fine-tuning of the base on `rows` (answer-only loss, unlearn_peft's rendering), merged and saved."""
    started = time.perf_counter()
    model = fresh_base(options, tokenizer)
    lora = LoraConfig(r=options.ft_rank, lora_alpha=2 * options.ft_rank, lora_dropout=0.0, target_modules=LORA_TARGETS)
    model = get_peft_model(model, lora)
    dataset = tokenize_dataset(Dataset.from_list(qa(rows)), tokenizer, max_length=256, name="fine-tuning rows")
    args = TrainingArguments(
        output_dir=str(workdir / "finetune"),
        num_train_epochs=options.ft_epochs,
        per_device_train_batch_size=options.batch_size,
        learning_rate=options.ft_lr,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        seed=options.seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=lambda rows: causal_lm_inputs(pad_sequences(rows, tokenizer.pad_token_id)),
    )
    trainer.train()
    merged = trainer.model.merge_and_unload()
    destination.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    seconds = time.perf_counter() - started
    (destination / "fine_tune.json").write_text(json.dumps({"seconds": seconds, "rows": len(rows)}) + "\n")
    return seconds


def cached_fine_tune(name: str, rows, options, tokenizer, models_dir: Path, workdir: Path) -> tuple[Path, float, bool]:
    key = (
        f"{name}-authors{options.authors}-forget{options.forget_authors}-epochs{options.ft_epochs}-lr{options.ft_lr}"
        f"-r{options.ft_rank}-bs{options.batch_size}-seed{options.seed}"
    )
    destination = models_dir / key
    if (destination / "fine_tune.json").exists():
        return destination, json.loads((destination / "fine_tune.json").read_text())["seconds"], True
    print(f"fine-tuning the {name} model on {len(rows)} rows ...", flush=True)
    return destination, fine_tune(rows, options, tokenizer, destination, workdir), False


def unlearn(name, method, retain_loss, splits, options, tokenizer, target_dir: Path, workdir: Path):
    """Unlearn the forget authors from the target; return (model to evaluate, training seconds)."""
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    steps = options.uld_steps if method == "uld" else options.unlearn_steps
    learning_rate = {"learning_rate": options.uld_lr} if method == "uld" else {}
    args = UnlearnConfig(
        output_dir=str(workdir / name),
        method=method,
        retain_loss=retain_loss,
        max_steps=steps,
        per_device_train_batch_size=options.batch_size,
        max_length=256,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=max(1, steps // 4),
        seed=options.seed,
        **learning_rate,
    )
    started = time.perf_counter()
    trainer = UnlearnTrainer(
        target,
        args=args,
        forget_dataset=splits["train_forget"],  # with TOFU's paraphrased / perturbed columns (ULD augments)
        retain_dataset=qa(splits["train_retain"]),
        processing_class=tokenizer,
    )
    trainer.train()
    seconds = time.perf_counter() - started
    if method == "uld":
        trainer.save_model(str(workdir / name / "adapter"))
        del trainer, target
        gc.collect()
        base = AutoModelForCausalLM.from_pretrained(target_dir)
        return ULDModel.from_pretrained(workdir / name / "adapter", base_model=base), seconds
    return trainer.model.merge_and_unload().eval(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model, fixture rows; no RESULTS.md.")
    parser.add_argument(
        "--tofu",
        default="locuslab/TOFU",
        help="TOFU: the Hub dataset id, or a local directory holding its <config>.json files (JSON lines).",
    )
    parser.add_argument("--authors", type=int, default=10, help="Authors in the fine-tuning set (20 QA each).")
    parser.add_argument("--forget-authors", type=int, default=1, help="Authors to unlearn (from forget10).")
    parser.add_argument("--ft-epochs", type=float, default=2, help="Fine-tuning epochs (target and retain).")
    parser.add_argument("--ft-lr", type=float, default=2e-3, help="Fine-tuning learning rate (LoRA).")
    parser.add_argument("--ft-rank", type=int, default=32, help="Fine-tuning LoRA rank (alpha = 2 × rank).")
    parser.add_argument("--batch-size", type=int, default=4, help="Batch size of fine-tuning and unlearning.")
    parser.add_argument("--unlearn-steps", type=int, default=50, help="Optimiser steps of each baseline.")
    parser.add_argument("--uld-steps", type=int, default=200, help="Optimiser steps of ULD's assistant.")
    parser.add_argument(
        "--uld-lr",
        type=float,
        default=3e-3,
        help="ULD's learning rate (the demo's SmolLM2 setting; the library default 1e-3 left the assistant "
        "unconverged after 150 steps here). The baselines use the library defaults (LoRA: 1e-4).",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[m[0] for m in METHODS],
        help=f"Unlearning methods to run, among {[m[0] for m in METHODS]}.",
    )
    parser.add_argument("--eval-forget", type=int, default=0, help="Forget rows evaluated (0: all of them).")
    parser.add_argument("--eval-retain", type=int, default=12, help="Retain rows evaluated.")
    parser.add_argument("--eval-other", type=int, default=6, help="real_authors and world_facts rows evaluated.")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="Greedy answer length scored by ROUGE.")
    parser.add_argument("--eval-batch-size", type=int, default=20, help="Generation batch size.")
    parser.add_argument("--report-dir", default=str(Path(__file__).parent / "tofu_mini_report"), help="Report dir.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared); 0: torch's own."
    )
    options = parser.parse_args()
    if options.quick:
        options.authors, options.forget_authors, options.ft_epochs = 2, 1, 1
        options.unlearn_steps = options.uld_steps = 1
        options.methods = [m[0] for m in METHODS]  # exercise every method
        options.eval_forget, options.eval_retain, options.eval_other, options.max_new_tokens = 3, 2, 1, 2
    unknown = set(options.methods) - {m[0] for m in METHODS}
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose among {[m[0] for m in METHODS]}")
    if options.threads:
        torch.set_num_threads(options.threads)
    run_started = time.perf_counter()
    torch.manual_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    splits = load_splits(options)
    eval_splits = {name: splits[name] for name in ("forget", "retain", "real_authors", "world_facts")}

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        models_dir = workdir / "models" if options.quick else cache_dir() / "tofu_mini"
        report_dir = workdir / "report" if options.quick else Path(options.report_dir)
        target_dir, target_seconds, target_cached = cached_fine_tune(
            "target", qa(splits["train_retain"] + splits["train_forget"]), options, tokenizer, models_dir, workdir
        )
        retain_dir, retain_seconds, retain_cached = cached_fine_tune(
            "retain", qa(splits["train_retain"]), options, tokenizer, models_dir, workdir
        )

        def evaluate(model, name, retain_results=None):
            started = time.perf_counter()
            results = evaluate_tofu(
                model,
                tokenizer,
                eval_splits,
                retain_model_results=retain_results,
                model_name=name,
                max_new_tokens=options.max_new_tokens,
                batch_size=options.eval_batch_size,
            )
            print(f"evaluated {name} in {time.perf_counter() - started:.0f} s", flush=True)
            return results

        base = fresh_base(options, tokenizer)
        base_forget_probability = sum(
            answer_probability(base, tokenizer, r["question"], r["answer"]) for r in splits["forget"]
        ) / len(splits["forget"])
        del base
        retain_results = evaluate(AutoModelForCausalLM.from_pretrained(retain_dir).eval(), "retain model")
        retain_results = {**retain_results, "train_seconds": retain_seconds}
        ratios = [q["truth_ratio"] for q in retain_results["splits"]["forget"]["per_question"]]
        retain_results["forget_quality"] = forget_quality(ratios, ratios)  # 1 by definition: the reference
        all_results = [retain_results]
        target = AutoModelForCausalLM.from_pretrained(target_dir).eval()
        all_results.append({**evaluate(target, "target", retain_results), "train_seconds": target_seconds})
        del target
        for name, method, retain_loss in METHODS:
            if name not in options.methods:
                continue
            print(f"unlearning with {name} ...", flush=True)
            model, seconds = unlearn(name, method, retain_loss, splits, options, tokenizer, target_dir, workdir)
            print(f"{name}: trained in {seconds:.0f} s", flush=True)
            all_results.append({**evaluate(model, name, retain_results), "train_seconds": seconds})
            del model
            gc.collect()
        written = write_tofu_report(all_results, report_dir)
        total = time.perf_counter() - run_started

        rows = []
        for results in all_results:
            rows.append(
                [
                    results["model_name"],
                    f"{results['forget_quality']:.3g}",
                    f"{results['model_utility']:.3f}",
                    f"{results['splits']['forget']['probability']:.3f}",
                    f"{results['splits']['forget']['rouge']:.3f}",
                    f"{results['splits']['retain']['rouge']:.3f}",
                    f"{results['train_seconds']:.0f}",
                ]
            )
        header = [
            "model",
            "forget quality",
            "model utility",
            "forget prob.",
            "forget ROUGE",
            "retain ROUGE",
            "train s",
        ]
        table = markdown_table(header, rows)
        summary = (
            f"{options.authors} authors ({options.authors * ROWS_PER_AUTHOR} QA), {options.forget_authors} forget "
            f"author(s) ({len(splits['train_forget'])} QA). Evaluated: forget {len(splits['forget'])}, "
            f"retain {len(eval_splits['retain'])}, "
            f"real_authors {len(eval_splits['real_authors'])}, world_facts {len(eval_splits['world_facts'])} "
            f"questions, {options.max_new_tokens} new tokens. Fine-tuning: LoRA r={options.ft_rank} on all layers, "
            f"{options.ft_epochs:g} epochs, lr {options.ft_lr:g}, batch {options.batch_size}, merged"
            f"{' (cached)' if target_cached and retain_cached else ''}. Unlearning: batch {options.batch_size}, "
            f"{options.unlearn_steps} steps per baseline at the library's default lr, {options.uld_steps} for ULD "
            f"at lr "
            f"{options.uld_lr:g}.\n\n"
            f"Forget-answer probability: base model {base_forget_probability:.3f}, target "
            f"{all_results[1]['splits']['forget']['probability']:.3f}, retain model "
            f"{retain_results['splits']['forget']['probability']:.3f}.\n\n"
            f"Plot: `{os.path.relpath(written['forget_quality_vs_utility'])}`. Whole run: {total:.0f} s "
            f"(fine-tuning {'cached' if target_cached else f'{target_seconds:.0f} s'} target, "
            f"{'cached' if retain_cached else f'{retain_seconds:.0f} s'} retain)."
        )
        print(table)
        print(summary)
        summary_json = {
            "table": [dict(zip(header, row, strict=True)) for row in rows],
            "base_forget_probability": base_forget_probability,
            "total_seconds": total,
            "report": {k: str(v) for k, v in written.items()},
        }
        print("JSON " + json.dumps(summary_json))
        if not options.quick:
            append_results(
                f"TOFU mini, SmolLM2-135M-Instruct, {options.authors} authors, forget {options.forget_authors}",
                table,
                summary,
            )


if __name__ == "__main__":
    main()

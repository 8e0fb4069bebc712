"""TOFU in small: a target that has memorised 20 fictitious authors, every method at its defaults, the baselines
over a grid, and TOFU's forget quality and model utility.

The TOFU protocol (Maini et al. 2024) at SmolLM2 size, with TOFU's forget01 forget set:

1. Target: SmolLM2-135M-Instruct fine-tuned on every weight on 20 TOFU authors (400 QA: TOFU's first 18 authors
   and the 2 authors of forget01) until its mean answer probability is at least 0.9 (TOFU's fine-tuned models have
   memorised their answers); rows are rendered as unlearn_peft renders them (chat template, loss on the answer).
2. Retain model: the same fine-tuning on the 18 retain authors only (360 QA): TOFU's reference for forget quality.
   Both are cached in the unlearn_peft cache directory (`$UNLEARN_PEFT_CACHE`, else `~/.cache/unlearn_peft`) and
   rebuilt when missing.
3. Unlearning the 2 forget authors (40 QA) from the target with `UnlearnTrainer`: ULD and every baseline (GA, GD,
   KL, NPO+GD, SimNPO, IdkDPO) at the library's defaults, and each baseline over a grid of learning rate × epochs.
   The unlearning's retain set is the retain authors' rows minus a validation split (`VALIDATION_ROWS_PER_AUTHOR`
   rows per author).
4. The grid point reported for each baseline is chosen by a fixed rule that reads only the validation split (never
   a test metric): `SELECTION_RULE`.
5. `evaluate_tofu` on every model and grid point: all 40 forget questions, every retain question outside the
   validation split, all real_authors and world_facts questions; forget quality against the retain model.
   `benchmarks/tofu_mini_report/`: one JSON per model, `summary.md`, `forget_quality_vs_utility.png` (every point),
   `splits.png`; RESULTS.md gets the table, the greedy answers read as text (`benchmarks/_answers.py`) and #15's
   goals, each with whether it was met.

Data: `benchmarks/data/tofu/` (TOFU rows, MIT; see its README) unless `--tofu` names the Hub or another copy.

    python benchmarks/tofu_mini.py                   # the whole benchmark; a GPU when there is one
    python benchmarks/tofu_mini.py --retain-authors 4 --grid-learning-rates 1e-4 1e-3 --grid-epochs 5
    python benchmarks/tofu_mini.py --runs-dir tofu-runs  # keep each evaluation; run again to resume or extend
    python benchmarks/tofu_mini.py --retain-authors 6 --baselines  # ULD only, against the target and retain model
    python benchmarks/tofu_mini.py --quick           # tiny random model, fixture rows, 1 step per run (CI)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedModel

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.embedded import smollm2_checkpoint
from unlearn_peft.evaluation import answer_probabilities, evaluate_tofu, forget_quality, write_tofu_report
from unlearn_peft.sources import load_rows

try:
    from ._answers import answer_words_stated, unchanged_answers
    from ._common import TOFU_FIXTURES, append_results, commit, machine, markdown_table
    from ._targets import memorised_model, question_answers
except ImportError:  # run as a script
    from _answers import answer_words_stated, unchanged_answers
    from _common import TOFU_FIXTURES, append_results, commit, machine, markdown_table
    from _targets import memorised_model, question_answers

BUNDLED_TOFU = Path(__file__).parent / "data" / "tofu"
REPORT_DIR = Path(__file__).parent / "tofu_mini_report"
ROWS_PER_AUTHOR = 20
FORGET_CONFIG = "forget01_perturbed"
TOFU_CONFIGS = (FORGET_CONFIG, "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")
MEMORISED_PROBABILITY = 0.9
VALIDATION_ROWS_PER_AUTHOR = 2
KEPT_ON_VALIDATION = 0.95
SELECTION_RULE = (
    "among a baseline's grid points, ordered by learning rate × epochs (the update budget), the largest whose mean "
    f"answer probability on the validation rows is at least {KEPT_ON_VALIDATION}× the target's; the smallest point "
    "when none is"
)
BASELINES: dict[str, tuple[str, str]] = {
    "GA": ("ga", "none"),
    "GD": ("ga", "nll"),
    "KL": ("ga", "kl"),
    "NPO+GD": ("npo", "nll"),
    "SimNPO": ("simnpo", "nll"),
    "IdkDPO": ("idk_dpo", "nll"),
}
"""Baseline name → (`UnlearnConfig.method`, `retain_loss`)."""
ULD_UTILITY_GOAL = 0.97
ULD_FORGET_QUALITY_GOAL = 0.5


@dataclass
class Splits:
    """Rows of one run: training (target, retain model, unlearning), validation, and evaluation."""

    forget: list[dict]
    retain_train: list[dict]
    validation: list[dict]
    evaluation: dict[str, list[dict]]


@dataclass
class Run:
    """One unlearned model: its method, settings, training time, validation score and evaluation."""

    name: str
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    validation_ratio: float = float("nan")
    results: dict[str, Any] = field(default_factory=dict)


TARGET_PROBABILITY_TOLERANCE = 1e-4
"""Relative difference up to which two readings of the target's answer probabilities name the same target: float32
scoring in other batches (or by another commit's batching) moves them by about 3e-5; a rebuilt target by far more."""


def same_settings(kept: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a kept evaluation's settings are `wanted`: equal, except the target's answer probabilities, which only
    need to agree within `TARGET_PROBABILITY_TOLERANCE`."""
    key = "target_answer_probabilities"
    kept_probabilities, wanted_probabilities = kept.get(key, {}), wanted.get(key, {})
    if {**kept, key: None} != {**wanted, key: None} or kept_probabilities.keys() != wanted_probabilities.keys():
        return False
    return all(
        math.isclose(kept_probabilities[rows], wanted_probabilities[rows], rel_tol=TARGET_PROBABILITY_TOLERANCE)
        for rows in wanted_probabilities
    )


RUN_KEY_FIELDS = tuple(
    name for name in UnlearnConfig.__annotations__ if name not in {"logging_steps", "remove_unused_columns"}
) + ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "max_grad_norm", "optim", "seed")
"""The settings that decide an unlearned model: every field `UnlearnConfig` declares, and the inherited ones that
change the optimisation. A kept evaluation is keyed on their resolved values, so a change of the library's defaults
(a method's step budget, say) trains the run again instead of reusing a model trained under the old ones."""


def resolved_run_settings(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """`{"method": method, **settings}` resolved through `UnlearnConfig` (the library's defaults filled in) to the
    values of `RUN_KEY_FIELDS`, as JSON would read them back."""
    with tempfile.TemporaryDirectory() as output_dir:
        args = UnlearnConfig(output_dir=output_dir, method=method, report_to="none", **settings)
    resolved = {name: getattr(args, name) for name in RUN_KEY_FIELDS}
    return json.loads(json.dumps({"method": method, **resolved}, default=str))


class RunStore:
    """Evaluations kept in `--runs-dir`, one JSON per model, reused by a later run with the same settings.

    A run at the issue's size takes hours on a CPU; with a runs directory an interrupted run resumes, and a run with
    more baselines or grid points trains only what is new. A kept evaluation is reused only when everything that
    decides it matches: the benchmark's settings (data, sizes, seed, device), the memorised target's answer
    probabilities (a rebuilt target differs) and the run's method and settings. Each JSON records the commit that
    produced it; the report counts what was reused.
    """

    def __init__(self, directory: str | None, settings: dict[str, Any]) -> None:
        self.directory = Path(directory) if directory else None
        self.settings = settings
        self.reused: list[str] = []
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name.replace(' ', '_').replace(',', '').replace('/', '_')}.json"

    def load(self, name: str, run_settings: dict[str, Any]) -> dict[str, Any] | None:
        """The kept evaluation of `name` when its settings are these, else `None`."""
        if self.directory is None or not self._path(name).exists():
            return None
        try:
            kept = json.loads(self._path(name).read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # a run stopped while writing it
            print(f"{name}: {self._path(name)} is not readable JSON; training it again", flush=True)
            return None
        if not same_settings(kept.get("benchmark", {}), {**self.settings, "run": run_settings}):
            print(f"{name}: kept in {self.directory} with other settings; training it again", flush=True)
            return None
        print(f"{name}: reusing its evaluation from {self.directory} (commit {kept.get('commit')})", flush=True)
        self.reused.append(f"{name} ({kept.get('commit')})")
        return kept

    def save(self, name: str, run_settings: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        """Keep `results` (with the settings and commit that produced them, which it returns them with)."""
        if self.directory is None:
            return results
        kept = {**results, "benchmark": {**self.settings, "run": run_settings}, "commit": commit()}
        self._path(name).write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")
        return kept


def load_splits(options: argparse.Namespace) -> Splits:
    """TOFU's rows cut into the benchmark's splits (checked to hold `--retain-authors` whole authors)."""
    if options.quick:
        read = {
            FORGET_CONFIG: TOFU_FIXTURES / "forget01_perturbed.json",
            "retain_perturbed": TOFU_FIXTURES / "retain_perturbed_head40.json",
            "real_authors_perturbed": TOFU_FIXTURES / "real_authors_perturbed_head4.json",
            "world_facts_perturbed": TOFU_FIXTURES / "world_facts_perturbed_head4.json",
        }
        tofu = {config: load_rows(str(path)).to_list() for config, path in read.items()}
    else:
        try:
            tofu = {config: load_rows(options.tofu, config, argument="--tofu").to_list() for config in TOFU_CONFIGS}
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(
                f"{error} Pass --tofu locuslab/TOFU (the Hub) or a directory holding {', '.join(TOFU_CONFIGS)} "
                "as <config>.json files."
            ) from error
    retain_rows = tofu["retain_perturbed"][: options.retain_authors * ROWS_PER_AUTHOR]
    if len(retain_rows) < options.retain_authors * ROWS_PER_AUTHOR:
        raise SystemExit(
            f"--retain-authors {options.retain_authors} needs {options.retain_authors * ROWS_PER_AUTHOR} rows of "
            f"retain_perturbed; {options.tofu} has {len(retain_rows)}."
        )
    in_validation = [
        index % ROWS_PER_AUTHOR >= ROWS_PER_AUTHOR - VALIDATION_ROWS_PER_AUTHOR for index in range(len(retain_rows))
    ]
    validation = [row for row, held_out in zip(retain_rows, in_validation, strict=True) if held_out]
    retain_train = [row for row, held_out in zip(retain_rows, in_validation, strict=True) if not held_out]
    forget = tofu[FORGET_CONFIG]
    limit = options.eval_limit or None
    evaluation = {
        "forget": forget[:limit],
        "retain": retain_train[:limit],
        "real_authors": tofu["real_authors_perturbed"][:limit],
        "world_facts": tofu["world_facts_perturbed"][:limit],
    }
    return Splits(forget=forget, retain_train=retain_train, validation=validation, evaluation=evaluation)


def mean_answer_probability(model: PreTrainedModel, tokenizer, rows: list[dict]) -> float:
    """`exp(mean answer-token log p)` averaged over `rows` (the quantity `memorize` brings to 0.9)."""
    pairs = [(row["question"], row["answer"]) for row in rows]
    return sum(answer_probabilities(model, tokenizer, pairs)) / len(rows)


def cached_models(options: argparse.Namespace, splits: Splits, tokenizer) -> tuple[dict[str, float], float]:
    """Fine-tune (or load from the cache) the target and the retain model, save both under the run's directory;
    return the target's mean answer probability per row set, and the seconds it took (loading and scoring only
    when both were cached)."""
    started = time.perf_counter()
    authors = f"{options.retain_authors}+2-authors-p{MEMORISED_PROBABILITY}"
    memorised = {}
    for name, rows in (("target", splits.retain_train + splits.validation + splits.forget), ("retain", None)):
        rows = rows if rows is not None else splits.retain_train + splits.validation
        model, _ = memorised_model(
            f"tofu-mini-{name}-{authors}-seed{options.seed}",
            question_answers(rows),
            tokenizer,
            options.quick,
            MEMORISED_PROBABILITY,
            device=options.device,
        )
        if name == "target":
            memorised = {
                "forget": mean_answer_probability(model, tokenizer, splits.forget),
                "retain": mean_answer_probability(model, tokenizer, splits.retain_train),
                "validation": mean_answer_probability(model, tokenizer, splits.validation),
            }
        model.cpu().save_pretrained(options.workdir / name)
        del model
        gc.collect()
    return memorised, time.perf_counter() - started


def load_model(options: argparse.Namespace, name: str) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(options.workdir / name, dtype=torch.float32).to(options.device).eval()


def unlearn(options: argparse.Namespace, run: Run, splits: Splits, tokenizer) -> PreTrainedModel:
    """Train `run` on the target; return the unlearned model (merged LoRA, or `ULDModel` for ULD)."""
    output_dir = options.workdir / "runs" / run.name.replace(" ", "_")
    settings = {**run.settings, **({"max_steps": 1} if options.quick else {})}
    args = UnlearnConfig(
        output_dir=str(output_dir),
        method=run.method,
        save_strategy="no",
        report_to="none",
        use_cpu=options.device == "cpu",
        seed=options.seed,
        **settings,
    )
    target = load_model(options, "target")
    started = time.perf_counter()
    trainer = UnlearnTrainer(
        target,
        args=args,
        forget_dataset=splits.forget,  # with TOFU's columns, which ULD's optional augmentations read
        retain_dataset=question_answers(splits.retain_train),
        processing_class=tokenizer,
    )
    trainer.train()
    run.train_seconds = time.perf_counter() - started
    if run.method == "uld":
        trainer.save_model(str(output_dir / "adapter"))
        del trainer, target
        gc.collect()
        return ULDModel.from_pretrained(output_dir / "adapter", base_model=load_model(options, "target")).eval()
    return trainer.model.merge_and_unload().eval()


def library_defaults(method: str, workdir: Path) -> tuple[float, float]:
    """The learning rate and epochs `UnlearnConfig` gives `method` when they are not set."""
    args = UnlearnConfig(output_dir=str(workdir / "defaults"), method=method, report_to="none", use_cpu=True)
    return args.learning_rate, args.num_train_epochs


def selected_point(runs: list[Run]) -> Run:
    """`SELECTION_RULE` over one baseline's grid `runs` (validation ratios set)."""
    ordered = sorted(runs, key=lambda run: (run.settings["learning_rate"] * run.settings["num_train_epochs"],))
    kept = [run for run in ordered if run.validation_ratio >= KEPT_ON_VALIDATION]
    return kept[-1] if kept else ordered[0]


def plot_every_point(
    retain_model: dict,
    target: dict,
    uld: Run,
    defaults: dict[str, Run],
    grids: dict[str, list[Run]],
    chosen: dict[str, Run],
    path: Path,
) -> None:
    """Forget quality against model utility: every baseline at its defaults (×) and at every grid point (dots, the
    chosen one circled), ULD, the target and the retain model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5))
    for index, (name, runs) in enumerate(grids.items()):
        colour = f"C{index}"
        axis.scatter(
            [run.results["model_utility"] for run in runs],
            [run.results["forget_quality"] for run in runs],
            color=colour,
            s=18,
            alpha=0.7,
            label=f"{name} (grid)",
        )
        default = defaults[name]
        axis.scatter(
            default.results["model_utility"],
            default.results["forget_quality"],
            marker="x",
            s=50,
            color=colour,
            label=f"{name} (defaults)",
        )
        point = chosen[name]
        axis.scatter(
            point.results["model_utility"],
            point.results["forget_quality"],
            s=110,
            facecolors="none",
            edgecolors=colour,
        )
    axis.scatter(
        uld.results["model_utility"], uld.results["forget_quality"], marker="*", s=220, color="k", label="ULD"
    )
    for results, marker, label in ((target, "s", "target"), (retain_model, "D", "retain model")):
        axis.scatter(results["model_utility"], results["forget_quality"], marker=marker, s=60, color="grey")
        axis.annotate(
            label,
            (results["model_utility"], results["forget_quality"]),
            xytext=(6, 4),
            fontsize=8,
            textcoords="offset points",
        )
    axis.set_xlabel("model utility")
    axis.set_ylabel("forget quality (KS p-value, log scale)")
    axis.set_yscale("log")
    axis.set_ylim(top=1.5)
    axis.set_title("TOFU in small: every run (circled: each baseline's chosen grid point)")
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def shown_path(path: Path) -> str:
    """`path` relative to the repository when inside it (RESULTS.md holds no machine's absolute paths)."""
    resolved = path.resolve()
    root = Path(__file__).resolve().parent.parent
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


def ratio_text(value: float, reference: float) -> str:
    return f"{value / reference:.3f}" if reference else "–"


def answers_table(headline: list[dict], target: dict) -> tuple[list[str], list[list[str]]]:
    """Each model's greedy answers read as text: how many are the target's, per split, and how much of the true
    forget and retain answers they state (`benchmarks/_answers.py`)."""
    splits = list(target["splits"])
    header = ["model", *(f"{split} answers as the target's" for split in splits)]
    header += ["forget answer words stated", "retain answer words stated"]
    rows = []
    for results in headline:
        row = [results["model_name"]]
        for split in splits:
            answers, reference = results["splits"][split]["per_question"], target["splits"][split]["per_question"]
            row.append(f"{unchanged_answers(answers, reference)} / {len(reference)}")
        for split in ("forget", "retain"):
            row.append(f"{answer_words_stated(results['splits'][split]['per_question']):.2f}")
        rows.append(row)
    return header, rows


def methods_run(baselines: list[str], grid_learning_rates: list[float], grid_epochs: list[float]) -> str:
    """What a run trained, for its RESULTS.md title: a baseline subset or a small grid is named, never called every."""
    if not baselines:
        return "ULD, no baseline"
    named = "every baseline" if set(baselines) == set(BASELINES) else "/".join(baselines)
    points = len(grid_learning_rates) * len(grid_epochs)
    return f"ULD and {named} at the defaults and over a {points}-point grid"


def goal_lines(uld: Run, target: dict, chosen_grids: dict[str, list[Run]]) -> list[str]:
    """#15's TOFU goals, each with its measured value and whether it was met."""
    uld_quality, uld_utility = uld.results["forget_quality"], uld.results["model_utility"]
    ratio = uld_utility / target["model_utility"] if target["model_utility"] else float("nan")
    lines = [
        f"- ULD forget quality ≥ {ULD_FORGET_QUALITY_GOAL}: {uld_quality:.3g} "
        f"({'met' if uld_quality >= ULD_FORGET_QUALITY_GOAL else 'not met'}).",
        f"- ULD model utility ≥ {ULD_UTILITY_GOAL}× the target's: {uld_utility:.4f} / {target['model_utility']:.4f} "
        f"= {ratio:.3f}× ({'met' if ratio >= ULD_UTILITY_GOAL else 'not met'}).",
    ]
    for name, runs in chosen_grids.items():
        at_least = [run for run in runs if run.results["model_utility"] >= uld_utility]
        if not at_least:
            lines.append(
                f"- ULD above {name}'s best point at equal or higher utility: no {name} point reaches "
                f"ULD's utility (met)."
            )
            continue
        best = max(at_least, key=lambda run: run.results["forget_quality"])
        met = uld_quality > best.results["forget_quality"]
        lines.append(
            f"- ULD above {name}'s best point at equal or higher utility ({best.name}: forget quality "
            f"{best.results['forget_quality']:.3g}, utility {best.results['model_utility']:.4f}): "
            f"{'met' if met else 'not met'}."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model, fixture rows, 1 step; no RESULTS.md.")
    parser.add_argument(
        "--tofu",
        default=str(BUNDLED_TOFU),
        help="TOFU: a directory holding its <config>.json files (default: the rows in benchmarks/data/tofu), or the "
        "Hub id locuslab/TOFU.",
    )
    parser.add_argument(
        "--baselines",
        nargs="*",
        choices=list(BASELINES),
        default=list(BASELINES),
        help="Baselines to run; `--baselines` with none: ULD, the target and the retain model only.",
    )
    parser.add_argument("--retain-authors", type=int, default=18, help="Retain authors (20 QA each); forget: 2.")
    parser.add_argument(
        "--grid-learning-rates", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3], help="Baselines' grid: lr."
    )
    parser.add_argument("--grid-epochs", type=float, nargs="+", default=[5, 10], help="Baselines' grid: epochs.")
    parser.add_argument(
        "--eval-limit", type=int, default=0, help="Evaluate only the first N questions of each split (0: all)."
    )
    parser.add_argument("--max-new-tokens", type=int, default=48, help="Greedy answer length scored by ROUGE.")
    parser.add_argument("--eval-batch-size", type=int, default=16, help="Generation batch size.")
    parser.add_argument("--report-dir", default=str(REPORT_DIR), help="Where the report is written.")
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="Keep each model's evaluation here and reuse those kept with the same settings, so an interrupted or "
        "extended run resumes (default: nothing kept).",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's own choice).")
    options = parser.parse_args()
    if options.retain_authors < 1:
        parser.error(f"--retain-authors {options.retain_authors}: at least 1 (its rows give the validation split)")
    if options.quick:
        options.retain_authors, options.eval_limit, options.max_new_tokens = 1, 2, 2
        options.grid_learning_rates, options.grid_epochs = [1e-4, 1e-3], [1]
    if options.threads:
        torch.set_num_threads(options.threads)
    run_started = time.perf_counter()
    torch.manual_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    splits = load_splits(options)
    timings: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        options.workdir = Path(tmp)
        report_dir = options.workdir / "report" if options.quick else Path(options.report_dir)
        memorised, timings["fine-tuning target and retain model"] = cached_models(options, splits, tokenizer)
        store = RunStore(
            options.runs_dir,
            {
                "tofu": "bundled" if Path(options.tofu) == BUNDLED_TOFU else options.tofu,
                "quick": options.quick,
                "retain_authors": options.retain_authors,
                "eval_limit": options.eval_limit,
                "max_new_tokens": options.max_new_tokens,
                "seed": options.seed,
                "device": options.device,
                "target_answer_probabilities": memorised,
            },
        )

        def evaluate(model, name: str, retain_results: dict | None) -> dict:
            return evaluate_tofu(
                model,
                tokenizer,
                splits.evaluation,
                retain_model_results=retain_results,
                model_name=name,
                max_new_tokens=options.max_new_tokens,
                batch_size=options.eval_batch_size,
            )

        started = time.perf_counter()
        retain_results = store.load("retain model", {"model": "retain"})
        if retain_results is None:
            retain_results = evaluate(load_model(options, "retain"), "retain model", None)
            ratios = [q["truth_ratio"] for q in retain_results["splits"]["forget"]["per_question"]]
            retain_results["forget_quality"] = forget_quality(ratios, ratios)  # 1 by definition: the reference
            retain_results = store.save("retain model", {"model": "retain"}, retain_results)
        target = load_model(options, "target")
        target_validation = mean_answer_probability(target, tokenizer, splits.validation)
        target_results = store.load("target", {"model": "target"})
        if target_results is None:
            target_results = store.save("target", {"model": "target"}, evaluate(target, "target", retain_results))
        del target
        timings["evaluating target and retain model"] = time.perf_counter() - started

        def train_and_evaluate(run: Run) -> Run:
            run_settings = resolved_run_settings(run.method, run.settings)
            kept = store.load(run.name, run_settings)
            if kept is not None:
                run.results, run.train_seconds, run.validation_ratio = (
                    kept,
                    kept["train_seconds"],
                    kept["validation_ratio"],
                )
                return run
            print(f"unlearning: {run.name} ...", flush=True)
            model = unlearn(options, run, splits, tokenizer)
            run.validation_ratio = mean_answer_probability(model, tokenizer, splits.validation) / target_validation
            started = time.perf_counter()
            run.results = evaluate(model, run.name, retain_results)
            run.results["train_seconds"] = run.train_seconds
            run.results["validation_ratio"] = run.validation_ratio
            run.results = store.save(run.name, run_settings, run.results)
            timings["evaluating unlearned models"] = timings.get("evaluating unlearned models", 0.0) + (
                time.perf_counter() - started
            )
            timings["unlearning"] = timings.get("unlearning", 0.0) + run.train_seconds
            print(
                f"{run.name}: trained in {run.train_seconds:.0f} s, forget quality "
                f"{run.results['forget_quality']:.3g}, utility {run.results['model_utility']:.4f}",
                flush=True,
            )
            del model
            gc.collect()
            return run

        uld = train_and_evaluate(Run("ULD", "uld"))
        defaults: dict[str, Run] = {}
        grids: dict[str, list[Run]] = {}
        for name in options.baselines:
            method, retain_loss = BASELINES[name]
            defaults[name] = train_and_evaluate(Run(f"{name} (defaults)", method, {"retain_loss": retain_loss}))
            default_point = library_defaults(method, options.workdir)
            grids[name] = []
            for lr in options.grid_learning_rates:
                for epochs in options.grid_epochs:
                    settings = {"retain_loss": retain_loss, "learning_rate": lr, "num_train_epochs": epochs}
                    run = Run(f"{name} lr {lr:g}, {epochs:g} ep", method, settings)
                    if (lr, epochs) == default_point and not options.quick:  # trained already: the same run
                        run.train_seconds, run.validation_ratio = (
                            defaults[name].train_seconds,
                            defaults[name].validation_ratio,
                        )
                        run.results = {**defaults[name].results, "model_name": run.name}
                        grids[name].append(run)
                    else:
                        grids[name].append(train_and_evaluate(run))
        chosen = {name: selected_point(runs) for name, runs in grids.items()}

        headline = [retain_results, target_results, uld.results]
        for name in options.baselines:
            headline += [
                defaults[name].results,
                {**chosen[name].results, "model_name": f"{name} chosen: {chosen[name].name.removeprefix(name + ' ')}"},
            ]
        written = write_tofu_report(headline, report_dir)
        grid_dir = report_dir / "grid"
        grid_dir.mkdir(parents=True, exist_ok=True)
        for runs in grids.values():
            for run in runs:
                stem = run.name.replace(" ", "_").replace(",", "")
                (grid_dir / f"{stem}.json").write_text(json.dumps(run.results, indent=2) + "\n", encoding="utf-8")
        plot_every_point(
            retain_results, target_results, uld, defaults, grids, chosen, written["forget_quality_vs_utility"]
        )
        total = time.perf_counter() - run_started

        header = [
            "model",
            "forget quality",
            "model utility",
            "utility ÷ target",
            "forget prob.",
            "forget ROUGE",
            "retain ROUGE",
            "validation ÷ target",
            "train s",
        ]

        def row(results: dict) -> list[str]:
            return [
                results["model_name"],
                f"{results['forget_quality']:.3g}",
                f"{results['model_utility']:.4f}",
                ratio_text(results["model_utility"], target_results["model_utility"]),
                f"{results['splits']['forget']['probability']:.3f}",
                f"{results['splits']['forget']['rouge']:.3f}",
                f"{results['splits']['retain']['rouge']:.3f}",
                f"{results['validation_ratio']:.3f}" if "validation_ratio" in results else "–",
                f"{results['train_seconds']:.0f}" if "train_seconds" in results else "–",
            ]

        table = markdown_table(header, [row(results) for results in headline])
        answers_header, answers_rows = answers_table(headline, target_results)
        answers = markdown_table(answers_header, answers_rows)
        grid_table = markdown_table(header, [row(run.results) for runs in grids.values() for run in runs])
        goals = goal_lines(uld, target_results, grids)
        base_name = "a tiny random model" if options.quick else "SmolLM2-135M-Instruct"
        memorised_met = memorised["forget"] >= MEMORISED_PROBABILITY
        evaluation_sizes = ", ".join(f"{split} {len(rows)}" for split, rows in splits.evaluation.items())
        notes = (
            f"Target: {base_name} fine-tuned on every weight on {options.retain_authors + 2} TOFU authors "
            f"({len(splits.retain_train) + len(splits.validation) + len(splits.forget)} QA) until its mean answer "
            f"probability reached {MEMORISED_PROBABILITY}; its answer probability: forget "
            f"**{memorised['forget']:.3f}** ({'≥' if memorised_met else 'below'} {MEMORISED_PROBABILITY}), retain "
            f"{memorised['retain']:.3f}, validation {memorised['validation']:.3f}. Retain model: the same on the "
            f"{options.retain_authors} retain authors. Forget: TOFU's forget01 ({len(splits.forget)} QA); "
            f"unlearning's retain set: {len(splits.retain_train)} QA; validation: {len(splits.validation)} QA "
            f"({VALIDATION_ROWS_PER_AUTHOR} per retain author, in the target's fine-tuning, never in unlearning "
            f"or the test metrics). Evaluated questions: {evaluation_sizes}; greedy answers of "
            f"{options.max_new_tokens} new tokens. "
            + (
                f"Every method at the library's defaults; each baseline also over learning rate "
                f"{options.grid_learning_rates} × epochs {options.grid_epochs}, the point reported chosen by this "
                f"rule: {SELECTION_RULE}. "
                if options.baselines
                else "ULD at the library's defaults; no baseline run (`--baselines` with none). "
            )
            + f"Whole run {total / 60:.0f} min on {machine()} "
            + "("
            + ", ".join(f"{phase} {seconds / 60:.1f} min" for phase, seconds in timings.items())
            + f"). Commit {commit()}."
            + (
                f" Reused from `--runs-dir` (trained and evaluated by an earlier run with the same settings; its "
                f"training seconds are that run's, the phase times above exclude them): {', '.join(store.reused)}."
                if store.reused
                else ""
            )
            + "\n\nGreedy answers read as text: how many are the target's, and the share of a true answer's "
            "content words (four letters or more, or digits, minus common ones; those its question lacks) that the "
            "greedy answer states (the retain model, which never saw the forget authors, shows what guessing from the "
            f"question gives):\n\n{answers}"
            + "\n\n#15's goals on this benchmark:\n\n"
            + "\n".join(goals)
            + (f"\n\nEvery grid point:\n\n{grid_table}" if options.baselines else "")
            + f"\n\nReport and plot (every point): `{shown_path(report_dir)}`."
        )
        print(table)
        print(notes)
        methods = methods_run(options.baselines, options.grid_learning_rates, options.grid_epochs)
        title = f"TOFU in small: {options.retain_authors + 2} authors, forget01, {methods}, SmolLM2-135M-Instruct"
        summary_json = {
            "title": title,
            "table": [dict(zip(header, row(results), strict=True)) for results in headline],
            "grid": {name: [run.name for run in runs] for name, runs in grids.items()},
            "chosen": {name: run.name for name, run in chosen.items()},
            "goals": goals,
            "answers": [dict(zip(answers_header, answers_row, strict=True)) for answers_row in answers_rows],
            "memorised": memorised,
            "total_seconds": total,
            "reused": store.reused,
            "report": {key: str(value) for key, value in written.items()},
        }
        print("JSON " + json.dumps(summary_json))
        if not options.quick:
            append_results(title, table, notes)


if __name__ == "__main__":
    main()

"""`unlearn-peft eval` (and `trainers/evaluate.py`): evaluate a model, a ULD adapter or a baseline adapter on TOFU
or MUSE.

    unlearn-peft eval --model locuslab/tofu_ft_llama2-7b --adapter user/tofu-uld-forget10 --forget-split forget10 \
        --retain-model-results outputs/eval/retain90.json --output-dir outputs/eval

writes `<model-name>.json` (every per-question value), `summary.md` and the PNG plots.

    unlearn-peft eval --benchmark muse --adapter user/muse-news-uld \
        --verbmem muse-bench/MUSE-News:verbmem:forget --knowmem muse-bench/MUSE-News:knowmem:forget_qa \
        --forget-texts muse-bench/MUSE-News:privleak:forget --holdout-texts muse-bench/MUSE-News:privleak:holdout \
        --retrain-results outputs/eval/retrain.muse.json

writes `<model-name>.muse.json`, `muse_summary.md` and `muse.png`. A MUSE source is a local .json/.jsonl/.csv/
.parquet file or `hub_id:config:split`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..command_line import OneLineArgumentParser
from ..hub import resolve_adapter_dir
from ..modeling import ULDModel, check_fingerprint
from ..quiet import peft_wrapping
from ..sidecar import UnlearnSidecar
from ..sources import load_rows, resolve_model_name
from ..utils import torch_dtype
from .muse_eval import evaluate_muse
from .report import write_muse_report, write_tofu_report
from .tofu_eval import evaluate_tofu

logger = logging.getLogger(__name__)

TOFU_HUB_ID = "locuslab/TOFU"
TOFU_SPLITS = ("forget", "retain", "real_authors", "world_facts")
MUSE_PARTS = {
    "verbmem": "prompt, gt",
    "knowmem": "question, answer",
    "knowmem-few-shot": "question, answer",
    "knowmem-retain": "question, answer",
    "forget-texts": "text",
    "holdout-texts": "text",
}


def muse_source_rows(source: str, part: str) -> list[dict[str, Any]]:
    """Rows of a MUSE part from a local file or `hub_id:config:split`."""
    if Path(source).is_file():
        return load_rows(source, argument=f"--{part}").to_list()
    pieces = source.split(":")
    if len(pieces) != 3:
        raise ValueError(f"--{part} {source!r}: give a local file or hub_id:config:split.")
    return load_rows(pieces[0], pieces[1], pieces[2], argument=f"--{part}").to_list()


def run_muse(options: argparse.Namespace, model, tokenizer, name: str) -> dict[str, Path]:
    rows = {
        part: muse_source_rows(getattr(options, part.replace("-", "_")), part)
        for part in MUSE_PARTS
        if getattr(options, part.replace("-", "_"))
    }
    texts = {}
    for part in ("forget-texts", "holdout-texts"):
        if part in rows:
            missing = [i for i, row in enumerate(rows[part]) if not isinstance(row.get("text"), str)]
            if missing:
                raise ValueError(f"--{part} row {missing[0]}: column 'text' is missing or not a string.")
            texts[part] = [row["text"] for row in rows[part]]
    if options.max_rows is not None:
        rows = {part: part_rows[: options.max_rows] for part, part_rows in rows.items()}
        texts = {part: part_texts[: options.max_rows] for part, part_texts in texts.items()}
    results = evaluate_muse(
        model,
        tokenizer,
        verbmem_rows=rows.get("verbmem"),
        knowmem_rows=rows.get("knowmem"),
        knowmem_few_shot=rows.get("knowmem-few-shot"),
        knowmem_retain_rows=rows.get("knowmem-retain"),
        forget_texts=texts.get("forget-texts"),
        holdout_texts=texts.get("holdout-texts"),
        retrain_results=options.retrain_results,
        model_name=name,
        batch_size=options.batch_size,
    )
    return write_muse_report([results], options.output_dir)


def load_for_evaluation(
    model: str | None, adapter: str | None = None, dtype: str = "float32", revision: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a plain model, or a base with an unlearning adapter: a `ULDModel` for ULD, a `PeftModel` otherwise.

    The base defaults to the one recorded in the adapter's sidecar.
    """
    sidecar, directory = None, None
    if adapter is not None:
        directory = resolve_adapter_dir(adapter, revision=revision)
        sidecar = UnlearnSidecar.load(directory)
        model = model or sidecar.base_model_name_or_path
    if not model:
        raise ValueError(
            "Pass --model (a Hub id, a local path or embedded:smollm2) or an --adapter whose sidecar names it."
        )
    path = resolve_model_name(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype, "--dtype"), use_safetensors=True)
    base.eval()
    if sidecar is None:
        return base, tokenizer
    if sidecar.method == "uld":
        return ULDModel.from_pretrained(directory, base_model=base), tokenizer
    check_fingerprint(sidecar.base_model_fingerprint, base, str(adapter))
    with peft_wrapping():
        return PeftModel.from_pretrained(base, str(directory)).eval(), tokenizer


def tofu_splits(
    dataset: str,
    forget_split: str,
    configs: dict[str, str | None],
    max_rows: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Rows of the TOFU evaluation splits (`forget`, `retain`, `real_authors`, `world_facts`) from the Hub or a
    local directory of `<config>.json` files."""
    names = {
        "forget": configs.get("forget") or f"{forget_split}_perturbed",
        "retain": configs.get("retain") or "retain_perturbed",
        "real_authors": configs.get("real_authors") or "real_authors_perturbed",
        "world_facts": configs.get("world_facts") or "world_facts_perturbed",
    }
    splits = {}
    for split, config in names.items():
        rows = load_rows(dataset, config, "train", argument=f"{split} split")
        if max_rows is not None and len(rows) > max_rows:
            logger.warning(
                "--max-rows %d: evaluating %d of %d %s rows; scores are comparable only with runs of the same subset.",
                max_rows,
                max_rows,
                len(rows),
                split,
            )
            rows = rows.select(range(max_rows))
        splits[split] = rows.to_list()
    return splits


def build_parser(prog: str = "unlearn-peft eval") -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="Base model: Hub id, local path or embedded:smollm2 (default: the adapter's).")
    parser.add_argument("--adapter", help="Unlearning adapter directory or Hub repo (ULD or baseline).")
    parser.add_argument("--model-name", help="Label in the reports (default: the adapter's or model's name).")
    parser.add_argument("--dtype", default="float32", help="Weights dtype (float32, bfloat16, float16).")
    parser.add_argument("--benchmark", choices=("tofu", "muse"), default="tofu", help="Which benchmark to run.")
    parser.add_argument("--tofu-dataset", default=TOFU_HUB_ID, help="TOFU Hub id or local directory.")
    parser.add_argument("--forget-split", default="forget10", help="forget01, forget05 or forget10.")
    for split in TOFU_SPLITS:
        parser.add_argument(
            f"--{split.replace('_', '-')}-config", help=f"Override the dataset configuration of the {split} split."
        )
    parser.add_argument("--max-rows", type=int, help="Evaluate only the first N rows of each split (smoke tests).")
    parser.add_argument(
        "--retain-model-results", help="Evaluation JSON of the retain model on the same split (gives forget quality)."
    )
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Length of the greedy answers (ROUGE).")
    parser.add_argument("--batch-size", type=int, default=8, help="Generation batch size.")
    for part, columns in MUSE_PARTS.items():
        parser.add_argument(f"--{part}", help=f"MUSE: source of the {part} rows ({columns}).")
    parser.add_argument("--retrain-results", help="MUSE: evaluation JSON of the retrain model (gives PrivLeak).")
    parser.add_argument("--output-dir", default="outputs/eval", help="Where the JSON, summary.md and PNGs go.")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "unlearn-peft eval") -> int:
    options = build_parser(prog).parse_args(argv)
    model, tokenizer = load_for_evaluation(options.model, options.adapter, options.dtype)
    name = options.model_name or Path(str(options.adapter or options.model)).name
    if options.benchmark == "muse":
        written = run_muse(options, model, tokenizer, name)
        print(written["summary"].read_text(encoding="utf-8"))
        print("Wrote " + ", ".join(str(path) for path in written.values()))
        return 0
    configs = {split: getattr(options, f"{split}_config") for split in TOFU_SPLITS}
    splits = tofu_splits(options.tofu_dataset, options.forget_split, configs, options.max_rows)
    results = evaluate_tofu(
        model,
        tokenizer,
        splits,
        retain_model_results=options.retain_model_results,
        model_name=name,
        max_new_tokens=options.max_new_tokens,
        batch_size=options.batch_size,
    )
    written = write_tofu_report([results], options.output_dir)
    print((Path(options.output_dir) / "summary.md").read_text(encoding="utf-8"))
    print("Wrote " + ", ".join(str(path) for path in written.values()))
    return 0

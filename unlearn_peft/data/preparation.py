"""From the user's forget / retain / eval rows to the tokenised, paired datasets `UnlearnTrainer` trains on."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from .augmentation import keep_wrong_answer_tokens
from .collator import ForgetRetainDataset, concatenate_tokenized
from .formats import as_dataset
from .rendering import tokenize_dataset

if TYPE_CHECKING:
    from ..config import UnlearnConfig
    from ..methods import UnlearningMethod

logger = logging.getLogger(__name__)

Rows = Dataset | Sequence[dict[str, Any]]


def prepare_train_dataset(
    forget_dataset: Rows | None,
    retain_dataset: Rows | None,
    tokenizer: PreTrainedTokenizerBase,
    args: UnlearnConfig,
    method: UnlearningMethod,
) -> tuple[ForgetRetainDataset, dict[str, Any]]:
    """Validate, augment (as `method` asks) and tokenise the rows; returns the paired dataset and a summary of its
    sizes (rows given, examples after augmentation) for the sidecar and the model card."""
    forget = as_dataset(forget_dataset, "forget_dataset")
    retain = as_dataset(retain_dataset, "retain_dataset")
    if forget is None or len(forget) == 0:
        raise ValueError("forget_dataset is empty: pass at least one row of what the model must unlearn.")
    if retain is not None and len(retain) == 0:
        raise ValueError("retain_dataset is empty: pass rows the model must keep, or None with retain_loss_weight=0.")
    uses_retain = method.uses_retain(args)
    if retain is None and uses_retain:
        raise ValueError(
            f"retain_dataset is required for method={args.method!r} with retain_loss_weight="
            f"{args.retain_loss_weight} > 0 (retain term: "
            f"{args.retain_loss or 'KL(uniform ‖ assistant)'}). Pass one, or set retain_loss_weight=0."
        )

    def tokenize(rows: Dataset, name: str) -> Dataset:
        return tokenize_dataset(rows, tokenizer=tokenizer, max_length=args.max_length, name=name)

    paraphrased = method.forget_augmentation(forget, args)
    perturbed = method.retain_augmentation(forget, args)
    forget_tokens = concatenate_tokenized(
        [
            tokenize(forget, "forget_dataset"),
            tokenize(paraphrased, "forget_dataset (paraphrase augmentation)") if paraphrased is not None else None,
        ]
    )
    forget_tokens = method.add_forget_columns(forget_tokens, forget, tokenize, args)
    retain_tokens = None
    if retain is not None and uses_retain:
        retain_tokens = concatenate_tokenized(
            [
                tokenize(retain, "retain_dataset"),
                keep_wrong_answer_tokens(perturbed, tokenize, "retain_dataset (perturbed-answer augmentation)")
                if perturbed is not None and args.retain_loss_weight > 0
                else None,
            ]
        )
    summary = {
        "forget_rows": len(forget),
        "forget_examples": len(forget_tokens),
        "retain_rows": len(retain) if retain is not None else 0,
        "retain_examples": len(retain_tokens) if retain_tokens is not None else 0,
    }
    logger.info("Unlearning data: %s", summary)
    return ForgetRetainDataset(forget_tokens, retain_tokens), summary


def prepare_eval_dataset(
    eval_dataset: dict[str, Rows] | None, tokenizer: PreTrainedTokenizerBase, args: UnlearnConfig
) -> ForgetRetainDataset | None:
    """`{"forget": rows, "retain": rows}` tokenised for evaluation (no augmentation)."""
    if eval_dataset is None:
        return None
    if not isinstance(eval_dataset, dict) or "forget" not in eval_dataset:
        raise ValueError(
            "eval_dataset must be a dict {'forget': rows, 'retain': rows}; evaluation reports the assistant's "
            "forget and retain losses."
        )
    unknown = set(eval_dataset) - {"forget", "retain"}
    if unknown:
        raise ValueError(f"eval_dataset has unknown keys {sorted(unknown)}; use 'forget' and 'retain'.")

    def tokenize(rows: Dataset, name: str) -> Dataset:
        return tokenize_dataset(rows, tokenizer=tokenizer, max_length=args.max_length, name=name)

    forget = as_dataset(eval_dataset["forget"], "eval_dataset['forget']")
    if forget is None or len(forget) == 0:
        raise ValueError("eval_dataset['forget'] is empty.")
    retain = as_dataset(eval_dataset.get("retain"), "eval_dataset['retain']")
    return ForgetRetainDataset(
        tokenize(forget, "eval_dataset['forget']"),
        tokenize(retain, "eval_dataset['retain']") if retain is not None else None,
    )


def epochs_for_min_train_steps(num_examples: int, args: UnlearnConfig) -> float | None:
    """The epoch count that reaches `args.min_train_steps` optimiser steps on `num_examples` forget examples, when
    `num_train_epochs` gives fewer (small forget sets need the steps to converge); `None` when no change is due."""
    if args.max_steps > 0 or args.min_train_steps <= 0:
        return None
    batches_per_epoch = math.ceil(num_examples / (args.per_device_train_batch_size * args.world_size))
    steps_per_epoch = max(math.ceil(batches_per_epoch / args.gradient_accumulation_steps), 1)
    planned_steps = math.ceil(args.num_train_epochs * steps_per_epoch)
    if planned_steps >= args.min_train_steps:
        return None
    epochs = math.ceil(args.min_train_steps / steps_per_epoch)
    logger.warning(
        "num_train_epochs=%s gives only %d optimiser steps on %d forget examples; allowing %d epochs "
        "(%d steps) to reach min_train_steps=%d, which small forget sets need to converge.",
        args.num_train_epochs,
        planned_steps,
        num_examples,
        epochs,
        epochs * steps_per_epoch,
        args.min_train_steps,
    )
    return float(epochs)

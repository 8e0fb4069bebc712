"""`evaluate_muse`: the MUSE metrics of one model on a corpus, as a results JSON (see `unlearn_peft.evaluation.muse`
for the metrics and the conventions they follow)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import require_text
from .muse import (
    DEFAULT_MIN_K_FRACTION,
    auc_member_vs_nonmember,
    knowmem,
    min_k_percent_score,
    privleak,
    verbmem,
)
from .results import MUSE_RESULTS_SCHEMA, read_results


def load_muse_results(results: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read an evaluation JSON written from `evaluate_muse` (or pass the dict through), checking its schema."""
    return read_results(results, (MUSE_RESULTS_SCHEMA,))


def _rows_to_columns(
    rows: Sequence[Mapping[str, Any]], columns: tuple[str, str], what: str
) -> tuple[list[str], list[str]]:
    if not rows:
        raise ValueError(f"MUSE {what}: no rows to evaluate.")
    first, second = [], []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(
                f"MUSE {what} row {index}: expected a dict with {list(columns)}, got {type(row).__name__}."
            )
        first.append(require_text(row.get(columns[0]), f"MUSE {what}", index, columns[0]))
        second.append(require_text(row.get(columns[1]), f"MUSE {what}", index, columns[1]))
    return first, second


def _few_shot_pairs(
    few_shot: Sequence[tuple[str, str] | Mapping[str, Any]] | None, what: str
) -> list[tuple[str, str]] | None:
    """Few-shot examples as `(question, answer)` pairs, from pairs or from `question`/`answer` rows (MUSE's files)."""
    if few_shot is None:
        return None
    pairs = []
    for index, example in enumerate(few_shot):
        if isinstance(example, Mapping):
            pairs.append((example.get("question"), example.get("answer")))
        elif isinstance(example, (tuple, list)) and len(example) == 2:
            pairs.append((example[0], example[1]))
        else:
            raise ValueError(
                f"MUSE {what} row {index}: expected a (question, answer) pair or a dict, got {example!r:.80}."
            )
    for index, (question, answer) in enumerate(pairs):
        require_text(question, f"MUSE {what}", index, "question")
        require_text(answer, f"MUSE {what}", index, "answer")
    return pairs


def _membership_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], k: float, split: str
) -> list[dict[str, Any]]:
    return [
        {"text": text, "min_k_percent": min_k_percent_score(model, tokenizer, text, k)}
        for text in tqdm(texts, desc=f"MUSE PrivLeak: Min-K% on {split}", leave=False)
    ]


def _muse_auc(membership: Mapping[str, Any]) -> float:
    """MUSE's orientation: holdout texts are the positive class, forget texts the negative one."""
    return auc_member_vs_nonmember(
        [item["min_k_percent"] for item in membership["holdout"]],
        [item["min_k_percent"] for item in membership["forget"]],
    )


def _check_retrain_comparable(texts: Mapping[str, list[str]], k: float, retrain_results: Mapping[str, Any]) -> None:
    """Refuse a retrain evaluation on other texts or another k: its AUC would not be comparable."""
    name = retrain_results.get("model_name")
    theirs = retrain_results.get("membership")
    if theirs is None:
        raise ValueError(f"The retrain evaluation ({name!r}) has no membership scores: evaluate it with texts too.")
    for split in ("forget", "holdout"):
        their_texts = [item["text"] for item in theirs[split]]
        if texts[split] != their_texts:
            raise ValueError(
                f"The retrain model ({name!r}) was evaluated on other {split} texts ({len(their_texts)} texts) than "
                f"this model ({len(texts[split])}). PrivLeak compares AUCs on the same texts: evaluate the retrain "
                "model on the same forget and holdout texts, in the same order."
            )
    if theirs["k"] != k:
        raise ValueError(
            f"The retrain model ({name!r}) was scored with Min-K% k={theirs['k']}, this model with k={k}; use one k."
        )
    if _muse_auc(theirs) == 0:
        raise ValueError(
            f"The retrain model ({name!r}) has AUC 0 (every forget text scores as more member-like than every "
            "holdout text), and PrivLeak divides by it. Use more texts, or check that it never saw the forget set."
        )


def evaluate_muse(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    verbmem_rows: Sequence[Mapping[str, Any]] | None = None,
    knowmem_rows: Sequence[Mapping[str, Any]] | None = None,
    knowmem_few_shot: Sequence[tuple[str, str] | Mapping[str, Any]] | None = None,
    knowmem_retain_rows: Sequence[Mapping[str, Any]] | None = None,
    knowmem_retain_few_shot: Sequence[tuple[str, str] | Mapping[str, Any]] | None = None,
    forget_texts: Sequence[str] | None = None,
    holdout_texts: Sequence[str] | None = None,
    retrain_results: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    model_name: str = "model",
    min_k_fraction: float = DEFAULT_MIN_K_FRACTION,
    verbmem_max_new_tokens: int = 128,
    knowmem_max_new_tokens: int = 32,
    batch_size: int = 8,
) -> dict[str, Any]:
    r"""Evaluate `model` on MUSE's metrics and return every per-item value plus the aggregates, JSON-serialisable.

    Each part runs only when its data is given. The AUC follows MUSE's code (`privleak_auc_key =
    "forget_holdout_Min-40%"`: forget texts labelled non-member, holdout texts member), i.e.
    `auc = auc_member_vs_nonmember(holdout scores, forget scores)`, the probability that a holdout text looks more
    like training data than a forget text. A model that memorised the forget set gets an AUC near 0 and a PrivLeak
    near −100 (MUSE Table 3's target models); a retrain model about 0.5; over-unlearning gives PrivLeak > 0.
    (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv 2407.06460.)

    Args:
        model: any causal LM (plain, PEFT or `ULDModel`).
        tokenizer: its tokenizer.
        verbmem_rows: forget-set excerpts with `prompt` and `gt` (MUSE's `verbmem/forget`).
        knowmem_rows: forget-set questions with `question` and `answer` (MUSE's `knowmem/forget_qa`).
        knowmem_few_shot: in-context examples for them, `(question, answer)` pairs or rows (`forget_qa_icl`).
        knowmem_retain_rows: retain-set questions (`knowmem/retain_qa`), for MUSE's utility `knowmem_r`.
        knowmem_retain_few_shot: in-context examples for them (`retain_qa_icl`).
        forget_texts: forget-set texts (`privleak/forget`), for the membership AUC; needs `holdout_texts`.
        holdout_texts: texts from the same distribution that no model was trained on (`privleak/holdout`).
        retrain_results: the evaluation (dict or JSON path) of the retrain model on the same forget and holdout
            texts; gives `privleak`.
        model_name: a label for reports.
        min_k_fraction: the k of Min-K% Prob; MUSE uses 0.4.
        verbmem_max_new_tokens: greedy tokens for VerbMem; MUSE uses 128.
        knowmem_max_new_tokens: greedy tokens for KnowMem; MUSE uses 32.
        batch_size: generation batch size.

    Returns:
        `{"schema", "model_name", "verbmem": {max_new_tokens, per_item}, "knowmem": {max_new_tokens, few_shot,
        per_item}, "knowmem_retain": {...}, "membership": {k, forget: [{text, min_k_percent}], holdout: [...]},
        "verbmem_f", "knowmem_f", "knowmem_r" (means of ROUGE-L F1, in [0, 1]), "auc", "privleak" (percent, when
        `retrain_results` is given)}`, each part present only when its data was given.
    """
    if (forget_texts is None) != (holdout_texts is None):
        raise ValueError("The membership AUC needs both forget_texts and holdout_texts.")
    if retrain_results is not None and forget_texts is None:
        raise ValueError("PrivLeak against retrain_results needs forget_texts and holdout_texts.")
    if all(data is None for data in (verbmem_rows, knowmem_rows, knowmem_retain_rows, forget_texts)):
        raise ValueError("Nothing to evaluate: give verbmem_rows, knowmem_rows, knowmem_retain_rows or texts.")
    # Validate every input before the slow generation.
    verbmem_columns = _rows_to_columns(verbmem_rows, ("prompt", "gt"), "verbmem") if verbmem_rows is not None else None
    knowmem_parts = {}
    for key, rows, few_shot in (
        ("knowmem", knowmem_rows, knowmem_few_shot),
        ("knowmem_retain", knowmem_retain_rows, knowmem_retain_few_shot),
    ):
        if rows is not None:
            knowmem_parts[key] = (
                *_rows_to_columns(rows, ("question", "answer"), key),
                _few_shot_pairs(few_shot, f"{key} few-shot"),
            )
    texts = {}
    if forget_texts is not None:
        for split, split_texts in (("forget", forget_texts), ("holdout", holdout_texts)):
            if not split_texts:
                raise ValueError(f"MUSE privleak {split}: no texts to evaluate.")
            texts[split] = [
                require_text(text, f"MUSE privleak {split}", index, "text") for index, text in enumerate(split_texts)
            ]
    retrain = load_muse_results(retrain_results) if retrain_results is not None else None
    if retrain is not None:
        _check_retrain_comparable(texts, min_k_fraction, retrain)

    results: dict[str, Any] = {"schema": MUSE_RESULTS_SCHEMA, "model_name": model_name}
    if verbmem_columns is not None:
        scores = verbmem(
            model, tokenizer, *verbmem_columns, max_new_tokens=verbmem_max_new_tokens, batch_size=batch_size
        )
        results["verbmem"] = {"max_new_tokens": verbmem_max_new_tokens, "per_item": scores.per_item}
        results["verbmem_f"] = scores.mean_rouge_l_f1
    for key, (questions, answers, few_shot) in knowmem_parts.items():
        scores = knowmem(
            model,
            tokenizer,
            questions,
            answers,
            few_shot,
            max_new_tokens=knowmem_max_new_tokens,
            batch_size=batch_size,
        )
        results[key] = {
            "max_new_tokens": knowmem_max_new_tokens,
            "few_shot": [list(pair) for pair in few_shot or ()],
            "per_item": scores.per_item,
        }
        results["knowmem_f" if key == "knowmem" else "knowmem_r"] = scores.mean_rouge_l_f1
    if texts:
        results["membership"] = {
            "k": min_k_fraction,
            **{
                split: _membership_scores(model, tokenizer, split_texts, min_k_fraction, split)
                for split, split_texts in texts.items()
            },
        }
        results["auc"] = _muse_auc(results["membership"])
    if retrain is not None:
        results["privleak"] = privleak(results["auc"], _muse_auc(retrain["membership"]))
    return results

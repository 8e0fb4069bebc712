"""MUSE metrics: VerbMem, KnowMem and PrivLeak (Min-K% Prob AUC), and `evaluate_muse` for one model.

Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv 2407.06460. The
conventions follow the reference implementation (github.com/swj0419/muse_bench, `metrics/*.py`): raw text without
chat template, greedy decoding, ROUGE-L F1 without stemming, Min-40% Prob as the membership score, the VerbMem truth
cut to `max_new_tokens` tokens, and the AUC oriented as MUSE's `forget_holdout_Min-40%` (see `evaluate_muse`).
Deliberate differences, each explained where it is made: batched left-padded generation instead of one prompt at a
time; the KnowMem prompt ends in `"Answer:"`, not `"Answer: "` (`knowmem_prompt`); Min-K% keeps at least one token
(`min_k_percent_score`); decoding keeps the tokenizer's default `clean_up_tokenization_spaces`.

Everything works unchanged on any causal LM whose forward returns `.logits` and which has `.generate`: a plain
model, a PEFT model or a `ULDModel`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from scipy.stats import mannwhitneyu
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import require_text
from ..utils import eval_mode
from .results import MUSE_RESULTS_SCHEMA, read_results
from .rouge import rouge_l_f1

DEFAULT_MIN_K_FRACTION = 0.4  # MUSE's PrivLeak uses Min-40% (`privleak_auc_key = "forget_holdout_Min-40%"`)
# MUSE's knowmem.py keeps the answer up to the first of these: the model starting a new few-shot block.
KNOWMEM_ANSWER_STOPS = ("\n\n", "\nQuestion", "Question:")


@dataclass
class GenerationScores:
    """ROUGE-L F1 of greedy generations against references: the mean and every item.

    Attributes:
        mean_rouge_l_f1: the mean over items, in [0, 1] (MUSE reports it × 100).
        per_item: one dict per item with the prompt fields, the `generation` and its `rouge_l_f1`.
    """

    mean_rouge_l_f1: float
    per_item: list[dict[str, Any]] = field(default_factory=list)


def _require_same_length(first: Sequence[Any], second: Sequence[Any], names: tuple[str, str], what: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"MUSE {what}: {len(first)} {names[0]} but {len(second)} {names[1]}; they must pair up.")
    if not first:
        raise ValueError(f"MUSE {what}: no rows to evaluate.")


# ---------------------------------------------------------------------------------------------------- PrivLeak


@torch.no_grad()
def min_k_percent_score(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, k: float = DEFAULT_MIN_K_FRACTION
) -> float:
    r"""Min-K% Prob membership score of `text`: the mean of its lowest `k`-fraction of token log-probabilities.

    With `x_1..x_N` the tokens of `text` (tokenised as plain text with the tokenizer's own special tokens, no chat
    template) and `n = N − 1` scored tokens `x_2..x_N` (the first token has no context to be predicted from; for a
    tokenizer that prepends BOS, that first token is BOS and every text token is scored):

    `score = (1/m) Σ_{i ∈ lowest m} log p(x_i | x_<i)`, with `m = max(1, ⌊k · n⌋)`.

    Sign: the score is a mean log-probability (≤ 0), so **higher means more likely a training member**. MUSE's code
    stores its negation and ranks by `−stored`, which is the same ranking. The count `⌊k · n⌋` is MUSE's and the Min-K%
    authors' (`int(len(all_prob) * ratio)`, swj0419/muse_bench `metrics/privleak.py`); the `max(1, ·)` only differs
    where theirs averages an empty list (NaN), for texts shorter than `1/k + 1` tokens.

    (Shi et al. 2023, "Detecting Pretraining Data from Large Language Models", arXiv 2310.16789; used by MUSE,
    Shi et al. 2024, arXiv 2407.06460, §3 PrivLeak.)

    Args:
        model: any causal LM whose forward returns `.logits`.
        tokenizer: its tokenizer.
        text: the text to score.
        k: fraction of tokens kept, in (0, 1]; MUSE uses 0.4.

    Returns:
        The mean of the `m` lowest token log-probabilities (natural log).
    """
    if not 0 < k <= 1:
        raise ValueError(f"Min-K% needs a fraction k in (0, 1], got {k}.")
    token_ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if len(token_ids) < 2:
        raise ValueError(
            f"Min-K% needs at least 2 tokens (the first one is only context), but {text!r:.80} has {len(token_ids)}."
        )
    device = next(model.parameters()).device
    input_ids = torch.tensor([token_ids], device=device)
    with eval_mode(model):
        logits = model(input_ids=input_ids).logits
    log_probs = torch.log_softmax(logits[0, :-1].float(), dim=-1)
    token_log_probs = log_probs.gather(-1, input_ids[0, 1:, None]).squeeze(-1)
    kept = max(1, int(k * token_log_probs.numel()))
    return float(token_log_probs.sort().values[:kept].mean())


def auc_member_vs_nonmember(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    r"""ROC AUC of membership scores (higher = member): `AUC = U / (n₁ · n₂)`, the Mann–Whitney U of the members.

    It is the probability that a random member scores higher than a random non-member, ties counting ½; the same
    value as `sklearn.metrics.roc_auc_score` with members labelled 1. 1.0: perfectly separated, 0.5: chance,
    0.0: perfectly reversed. (Hanley & McNeil 1982; MUSE, Shi et al. 2024, arXiv 2407.06460, §3 PrivLeak.)

    Args:
        member_scores: scores of texts labelled as members (label 1).
        nonmember_scores: scores of texts labelled as non-members (label 0).

    Returns:
        The AUC, in [0, 1].
    """
    for name, scores in (("member_scores", member_scores), ("nonmember_scores", nonmember_scores)):
        if len(scores) == 0:
            raise ValueError(f"AUC needs at least one score in {name}.")
        if not all(math.isfinite(score) for score in scores):
            raise ValueError(f"AUC needs finite scores; {name} holds NaN or infinity.")
    # Only the U statistic is used; the asymptotic method skips the exact p-value's cost.
    statistic = mannwhitneyu(member_scores, nonmember_scores, alternative="two-sided", method="asymptotic").statistic
    return float(statistic) / (len(member_scores) * len(nonmember_scores))


def privleak(auc_unlearned: float, auc_retrain: float) -> float:
    r"""MUSE's PrivLeak, in percent: `(AUC_unlearned − AUC_retrain) / AUC_retrain × 100`.

    Both AUCs must be measured the same way on the same forget and holdout texts (see `evaluate_muse` for MUSE's
    orientation). Close to 0: the unlearned model leaks as much as a model never trained on the forget set.
    With MUSE's orientation, under-unlearning gives large negative values and over-unlearning large positive ones.
    (Shi et al. 2024, "MUSE", arXiv 2407.06460, §3.)

    Args:
        auc_unlearned: AUC of the unlearned model.
        auc_retrain: AUC of the retrained (never saw the forget set) model; must be > 0.

    Returns:
        The relative difference in percent.
    """
    if auc_retrain <= 0:
        raise ValueError(f"PrivLeak divides by the retrain model's AUC, which must be > 0 (got {auc_retrain}).")
    return (auc_unlearned - auc_retrain) / auc_retrain * 100


# ------------------------------------------------------------------------------------------ VerbMem / KnowMem


def _pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        raise ValueError("MUSE generation pads batches: the tokenizer needs a pad or an EOS token.")
    return pad_token_id


def _decode(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> str:
    # MUSE also asks for clean_up_tokenization_spaces=True; transformers 5 ignores it for BPE tokenizers (it would
    # strip spaces before punctuation), and ROUGE-L's tokenizer drops punctuation anyway, so the default is kept.
    return tokenizer.decode(token_ids, skip_special_tokens=True)


@torch.no_grad()
def _greedy_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    description: str,
) -> list[str]:
    """Greedy continuations of raw-text prompts (tokenizer's own special tokens, no chat template), left-padded.

    Padding is done here rather than by the tokenizer so that a tokenizer without a pad token needs no change.
    """
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be ≥ 1, got {batch_size} and {max_new_tokens}.")
    device = next(model.parameters()).device
    pad_token_id = _pad_token_id(tokenizer)
    continuations: list[str] = []
    with eval_mode(model):
        for start in tqdm(range(0, len(prompts), batch_size), desc=description, leave=False):
            encoded = [
                tokenizer(prompt, add_special_tokens=True)["input_ids"]
                for prompt in prompts[start : start + batch_size]
            ]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.tensor([[pad_token_id] * (width - len(ids)) + ids for ids in encoded], device=device)
            attention_mask = torch.tensor(
                [[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device
            )
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_token_id,
            )
            continuations.extend(_decode(tokenizer, row) for row in output[:, width:].tolist())
    return continuations


def verbmem(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    ground_truths: Sequence[str],
    max_new_tokens: int = 128,
    batch_size: int = 8,
) -> GenerationScores:
    r"""MUSE's VerbMem: how much of the forget text the model reproduces verbatim from its beginning.

    `VerbMem = (1/|D|) Σ_(x, y) ROUGE-L-F1(greedy continuation of x, y[:max_new_tokens])`, where the prompt `x` is
    the first tokens of a forget-set excerpt, `y` its true continuation truncated to its first `max_new_tokens`
    tokens (as MUSE does), and ROUGE-L F1 is computed without stemming. Prompts are raw text (no chat template).
    (Shi et al. 2024, "MUSE", arXiv 2407.06460, §3 C1: no verbatim memorisation.)

    Args:
        model: any causal LM with `.generate`.
        tokenizer: its tokenizer.
        prompts: the text prefixes (MUSE's `prompt` column).
        ground_truths: their true continuations (MUSE's `gt` column).
        max_new_tokens: greedy tokens generated, and tokens of the ground truth kept; MUSE uses 128.
        batch_size: generation batch size (left padding).

    Returns:
        `GenerationScores` whose `per_item` holds `prompt`, `ground_truth` (the truncated, scored text),
        `generation` and `rouge_l_f1`.
    """
    _require_same_length(prompts, ground_truths, ("prompts", "ground truths"), "verbmem")
    for index, (prompt, truth) in enumerate(zip(prompts, ground_truths, strict=True)):
        require_text(prompt, "MUSE verbmem", index, "prompt")
        require_text(truth, "MUSE verbmem", index, "gt")
    # Scored against as many tokens of the truth as were generated, or a long truth would cap the F1.
    references = [
        _decode(tokenizer, tokenizer(truth, add_special_tokens=False)["input_ids"][:max_new_tokens])
        for truth in ground_truths
    ]
    generations = _greedy_continuations(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        description="MUSE VerbMem: generating",
    )
    per_item = [
        {
            "prompt": prompt,
            "ground_truth": reference,
            "generation": generation,
            "rouge_l_f1": rouge_l_f1(generation, reference),
        }
        for prompt, reference, generation in zip(prompts, references, generations, strict=True)
    ]
    return GenerationScores(sum(item["rouge_l_f1"] for item in per_item) / len(per_item), per_item)


def knowmem_prompt(question: str, few_shot: Sequence[tuple[str, str]] | None = None) -> str:
    """MUSE's KnowMem prompt: one `Question: …\nAnswer: …` block per example, blank-line separated, then the question.

    Exactly `"".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in few_shot) + f"Question: {question}\nAnswer:"`.
    MUSE's `metrics/knowmem.py` ends the prompt with `"Answer: "`; the trailing space is left out here because
    tokenizers whose words carry their leading space (GPT-2-style BPE: SmolLM2, Llama 3, …) turn it into a lone
    space token the model rarely saw before a word, and answer nonsense (SmolLM2-135M: "1232" instead of " Paris").
    The model generates the space itself; the answer is stripped before scoring, so ROUGE is not affected.
    """
    examples = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in (few_shot or ()))
    return examples + f"Question: {question}\nAnswer:"


def knowmem_answer(generation: str) -> str:
    """The answer part of a KnowMem generation: up to the first blank line or new `Question` block, stripped."""
    for stop in KNOWMEM_ANSWER_STOPS:
        generation = generation.split(stop)[0]
    return generation.strip()


def knowmem(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    few_shot: Sequence[tuple[str, str]] | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 8,
) -> GenerationScores:
    r"""MUSE's KnowMem: ROUGE-L F1 of the model's short greedy answers to questions about a corpus.

    `KnowMem = (1/|Q|) Σ_(q, a) ROUGE-L-F1(answer to knowmem_prompt(q, few_shot), a)`, the answer being the greedy
    generation cut at the first blank line, `"\nQuestion"` or `"Question:"` (`knowmem_answer`), ROUGE-L F1 without
    stemming. On forget-set questions it measures remaining knowledge (lower is better unlearning); on retain-set
    questions, utility. (Shi et al. 2024, "MUSE", arXiv 2407.06460, §3 C2 and C4.)

    Args:
        model: any causal LM with `.generate`.
        tokenizer: its tokenizer.
        questions: the questions.
        answers: their reference answers.
        few_shot: in-context `(question, answer)` examples put before every question (MUSE's `*_qa_icl` files).
        max_new_tokens: greedy tokens generated before cutting; MUSE uses 32.
        batch_size: generation batch size (left padding).

    Returns:
        `GenerationScores` whose `per_item` holds `question`, `answer`, `generation` (the cut answer) and
        `rouge_l_f1`.
    """
    _require_same_length(questions, answers, ("questions", "answers"), "knowmem")
    for index, (question, answer) in enumerate(zip(questions, answers, strict=True)):
        require_text(question, "MUSE knowmem", index, "question")
        require_text(answer, "MUSE knowmem", index, "answer")
    for index, (question, answer) in enumerate(few_shot or ()):
        require_text(question, "MUSE knowmem few-shot", index, "question")
        require_text(answer, "MUSE knowmem few-shot", index, "answer")
    generations = _greedy_continuations(
        model,
        tokenizer,
        [knowmem_prompt(question, few_shot) for question in questions],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        description="MUSE KnowMem: generating",
    )
    per_item = []
    for question, answer, generation in zip(questions, answers, generations, strict=True):
        cut = knowmem_answer(generation)
        per_item.append(
            {"question": question, "answer": answer, "generation": cut, "rouge_l_f1": rouge_l_f1(cut, answer)}
        )
    return GenerationScores(sum(item["rouge_l_f1"] for item in per_item) / len(per_item), per_item)


# --------------------------------------------------------------------------------------------- whole benchmark


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

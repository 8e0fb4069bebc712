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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from scipy.stats import mannwhitneyu
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import require_text
from ..utils import eval_mode
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

"""IdkDPO (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121): DPO that prefers
a refusal ("I don't know"-style, `refusal_answers`) over the forget answer, against the reference model,
`L_f = −(2/β) · mean log σ(β · [(log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))])`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from datasets import Dataset

from ..answer_tokens import AnswerTokens
from ..data import DEFAULT_REFUSAL_ANSWERS, REFUSAL_PREFIX, StepCounts, UnlearningBatch, with_refusal_answers
from ..losses import dpo_loss, sequence_log_probs
from .base import BASELINE_DEFAULTS, ForgetTerm, Tokenize, UnlearningMethod, sequence_count

if TYPE_CHECKING:
    from ..config import UnlearnConfig


class IdkDPO(UnlearningMethod):
    name = "idk_dpo"
    title = "IdkDPO"
    description = (
        'IdkDPO prefers an "I don\'t know"-style refusal over the forget answer with DPO (Maini et al. 2024).'
    )
    citation = """@article{maini2024tofu,
  title   = {TOFU: A Task of Fictitious Unlearning for LLMs},
  author  = {Maini, Pratyush and Feng, Zhili and Schwarzschild, Avi and Lipton, Zachary C. and Kolter, J. Zico},
  journal = {arXiv preprint arXiv:2401.06121},
  year    = {2024}
}"""
    defaults = {**BASELINE_DEFAULTS, "beta": 0.1}
    reference_groups = ("forget", "refusal")

    def add_forget_columns(
        self, forget_tokens: Dataset, forget: Dataset, tokenize: Tokenize, args: UnlearnConfig
    ) -> Dataset:
        """The preferred answers: each forget question with a refusal, as `refusal_input_ids` / `refusal_labels`."""
        refusals = list(args.refusal_answers or DEFAULT_REFUSAL_ANSWERS)
        chosen = tokenize(with_refusal_answers(forget, refusals, "forget_dataset"), "forget_dataset (refusal answers)")
        forget_tokens = forget_tokens.add_column(f"{REFUSAL_PREFIX}input_ids", chosen["input_ids"])
        return forget_tokens.add_column(f"{REFUSAL_PREFIX}labels", chosen["labels"])

    def forget_term(
        self,
        answers: dict[str, AnswerTokens],
        batch: UnlearningBatch,
        counts: StepCounts,
        args: UnlearnConfig,
    ) -> ForgetTerm:
        rejected_log_probs, _ = sequence_log_probs(answers["forget"])
        chosen_log_probs, _ = sequence_log_probs(answers["refusal"])
        loss = dpo_loss(
            chosen_log_probs,
            batch.refusal.reference_log_prob,
            rejected_log_probs,
            batch.forget.reference_log_prob,
            args.beta,
            counts.forget_sequences,
        )
        return ForgetTerm(loss, counts.forget_sequences, sequence_count(batch.forget.labels))

"""IdkDPO (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121): DPO that prefers
a refusal ("I don't know"-style, `refusal_answers`) over the forget answer, against the reference model,
`L_f = −(2/β) · mean log σ(β · [(log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))])`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from datasets import Dataset

from ..answer_tokens import AnswerTokens
from ..data import DEFAULT_REFUSAL_ANSWERS, with_refusal_answers
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
    reference_groups = ("forget", "forget_chosen")

    def add_forget_columns(
        self, forget_tokens: Dataset, forget: Dataset, tokenize: Tokenize, args: UnlearnConfig
    ) -> Dataset:
        """The preferred answers: each forget question with a refusal, as `chosen_input_ids` / `chosen_labels`."""
        refusals = list(args.refusal_answers or DEFAULT_REFUSAL_ANSWERS)
        chosen = tokenize(with_refusal_answers(forget, refusals, "forget_dataset"), "forget_dataset (refusal answers)")
        forget_tokens = forget_tokens.add_column("chosen_input_ids", chosen["input_ids"])
        return forget_tokens.add_column("chosen_labels", chosen["labels"])

    def forget_term(
        self,
        answers: dict[str, AnswerTokens],
        inputs: dict[str, torch.Tensor],
        counts: dict[str, torch.Tensor],
        args: UnlearnConfig,
    ) -> ForgetTerm:
        rejected_log_probs, _ = sequence_log_probs(answers["forget"])
        chosen_log_probs, _ = sequence_log_probs(answers["forget_chosen"])
        loss = dpo_loss(
            chosen_log_probs,
            inputs["forget_chosen_reference_log_prob"],
            rejected_log_probs,
            inputs["forget_reference_log_prob"],
            args.beta,
            counts.get("forget_sequences"),
        )
        return ForgetTerm(loss, "forget_sequences", sequence_count(inputs["forget_labels"]))

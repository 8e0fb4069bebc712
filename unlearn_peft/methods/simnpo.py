"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning",
arXiv 2410.07163): NPO without a reference model, length-normalised,
`L_f = −(2/β) · mean log σ(−β/|y| · log π_θ(y|x) − δ)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..answer_tokens import AnswerTokens
from ..data import StepCounts, UnlearningBatch
from ..losses import sequence_log_probs, simnpo_loss
from .base import BASELINE_DEFAULTS, ForgetTerm, UnlearningMethod, sequence_count

if TYPE_CHECKING:
    from ..config import UnlearnConfig


class SimNPO(UnlearningMethod):
    name = "simnpo"
    title = "SimNPO"
    description = "SimNPO is a reference-free, length-normalised NPO (Fan et al. 2024)."
    citation = """@article{fan2024simplicity,
  title   = {Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning},
  author  = {Fan, Chongyu and others},
  journal = {arXiv preprint arXiv:2410.07163},
  year    = {2024}
}"""
    # γ of open-unlearning's configs/trainer/SimNPO.yaml (Fan et al. 2024 weigh the forget term the same way).
    defaults = {**BASELINE_DEFAULTS, "forget_loss_weight": 0.125, "beta": 4.5}

    def forget_term(
        self,
        answers: dict[str, AnswerTokens],
        batch: UnlearningBatch,
        counts: StepCounts,
        args: UnlearnConfig,
    ) -> ForgetTerm:
        log_probs, lengths = sequence_log_probs(answers["forget"])
        loss = simnpo_loss(log_probs, lengths, args.beta, args.simnpo_delta, counts.forget_sequences)
        return ForgetTerm(loss, counts.forget_sequences, sequence_count(batch.forget.labels))

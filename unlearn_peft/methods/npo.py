"""NPO: Negative Preference Optimization (Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic
Collapse to Effective Unlearning", arXiv 2404.05868).

`L_f = (2/β) · mean log(1 + (π_θ(y|x) / π_ref(y|x))^β)` over forget sequences; the reference is the model with the
adapter disabled, its log-probabilities cached before training (`precompute_reference_log_probs`) or computed
per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..answer_tokens import AnswerTokens
from ..data import StepCounts, UnlearningBatch
from ..losses import npo_loss, sequence_log_probs
from .base import BASELINE_DEFAULTS, ForgetTerm, UnlearningMethod, sequence_count

if TYPE_CHECKING:
    from ..config import UnlearnConfig


class NPO(UnlearningMethod):
    name = "npo"
    title = "NPO"
    description = (
        "Negative Preference Optimization lowers the forget answers' likelihood relative to the reference model, "
        "with a bounded loss (Zhang et al. 2024)."
    )
    citation = """@article{zhang2024negative,
  title   = {Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning},
  author  = {Zhang, Ruiqi and Lin, Licong and Bai, Yu and Mei, Song},
  journal = {arXiv preprint arXiv:2404.05868},
  year    = {2024}
}"""
    defaults = {**BASELINE_DEFAULTS, "beta": 0.1}
    reference_groups = ("forget",)

    def forget_term(
        self,
        answers: dict[str, AnswerTokens],
        batch: UnlearningBatch,
        counts: StepCounts,
        args: UnlearnConfig,
    ) -> ForgetTerm:
        log_probs, _ = sequence_log_probs(answers["forget"])
        loss = npo_loss(log_probs, batch.forget.reference_log_prob, args.beta, counts.forget_sequences)
        return ForgetTerm(loss, counts.forget_sequences, sequence_count(batch.forget.labels))

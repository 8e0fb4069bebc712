"""Gradient ascent (Jang et al. 2022, "Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
arXiv 2210.01504): raise the forget answers' NLL, `L_f = −NLL`, optionally with a retain term."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..answer_tokens import AnswerTokens
from ..data import StepCounts, UnlearningBatch
from ..losses import count_loss_tokens, gradient_ascent_loss
from .base import BASELINE_DEFAULTS, ForgetTerm, UnlearningMethod

if TYPE_CHECKING:
    from ..config import UnlearnConfig


class GradientAscent(UnlearningMethod):
    name = "ga"
    title = "gradient ascent"
    description = "Gradient ascent raises the loss of the forget answers (Jang et al. 2022)."
    citation = """@article{jang2022knowledge,
  title   = {Knowledge Unlearning for Mitigating Privacy Risks in Language Models},
  author  = {Jang, Joel and others},
  journal = {arXiv preprint arXiv:2210.01504},
  year    = {2022}
}"""
    defaults = {**BASELINE_DEFAULTS, "retain_loss": "none"}

    def forget_term(
        self,
        answers: dict[str, AnswerTokens],
        batch: UnlearningBatch,
        counts: StepCounts,
        args: UnlearnConfig,
    ) -> ForgetTerm:
        loss = gradient_ascent_loss(answers["forget"], counts.forget_tokens)
        return ForgetTerm(loss, counts.forget_tokens, count_loss_tokens(batch.forget.labels))

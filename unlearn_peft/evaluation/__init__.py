"""Evaluation of unlearned models (TOFU / MUSE metrics; issue #5 grows this package)."""

from .probability import answer_probability

__all__ = ["answer_probability"]

"""Train ULD's assistant until it has converged, not for a fixed number of steps.

ULD subtracts the assistant from the target, so an assistant that has not converged does harm, not just too little:
it must *remember* the forget set (low NLL on forget answers) and be close to *uniform* on the retain set (low
`KL(uniform ‖ p)` on retain answers), or subtracting it changes answers that should stay. The step budget
(`max_steps`, or `num_train_epochs` extended to `min_train_steps`) becomes an upper bound: training stops once the
running means of both terms over the last `convergence_window` batches are within their thresholds.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)


class ConvergenceTracker:
    """Running means of the assistant's forget NLL and retain KL over the last `window` training batches.

    Args:
        forget_nll (`float`): the forget term's mean must be at most this.
        retain_kl (`float`): the retain term's mean must be at most this (ignored without a retain set).
        window (`int`): how many of the latest training batches the means cover; converged needs a full window, so
            one lucky batch never counts.
    """

    def __init__(self, forget_nll: float, retain_kl: float, window: int) -> None:
        self.forget_nll, self.retain_kl, self.window = forget_nll, retain_kl, window
        self.forget: deque[float] = deque(maxlen=window)
        self.retain: deque[float] = deque(maxlen=window)

    def update(self, forget: float, retain: float | None) -> None:
        self.forget.append(forget)
        if retain is not None:
            self.retain.append(retain)

    @staticmethod
    def _mean(values: deque[float]) -> float | None:
        return sum(values) / len(values) if values else None

    @property
    def forget_mean(self) -> float | None:
        return self._mean(self.forget)

    @property
    def retain_mean(self) -> float | None:
        return self._mean(self.retain)

    @property
    def converged(self) -> bool:
        if len(self.forget) < self.window or self.forget_mean > self.forget_nll:
            return False
        return not self.retain or (len(self.retain) == self.window and self.retain_mean <= self.retain_kl)

    def summary(self, steps: int, budget: int) -> dict[str, Any]:
        """What the sidecar and the model card record about the run."""
        return {
            "converged": self.converged,
            "final_loss_forget": self.forget_mean,
            "final_loss_retain": self.retain_mean,
            "converged_forget_nll": self.forget_nll,
            "converged_retain_kl": self.retain_kl,
            "steps": steps,
            "step_budget": budget,
        }

    def report(self, steps: int, budget: int) -> dict[str, Any]:
        """Log whether the assistant converged within its step budget (a warning when it did not) and return the
        `summary` the sidecar and the model card record."""
        if self.converged:
            logger.info("ULD assistant converged in %d of at most %d steps (%s).", steps, budget, self.describe())
        else:
            logger.warning(
                "The ULD assistant has NOT converged after %d of %d steps: %s. Unlearning will be weak and retained "
                "answers may change; raise the step budget (max_steps or min_train_steps) or the learning rate.",
                steps,
                budget,
                self.describe(),
            )
        return self.summary(steps, budget)

    def describe(self) -> str:
        retain = f"{self.retain_mean:.3f}" if self.retain_mean is not None else "n/a"
        return (
            f"loss_forget={self.forget_mean:.3f} (want ≤ {self.forget_nll}), loss_retain={retain} (want ≤ "
            f"{self.retain_kl}), means over the last {len(self.forget)} batches"
        )


class StopWhenConverged(TrainerCallback):
    """Stops training at the end of the first optimiser step at which the tracker reports convergence."""

    def __init__(self, tracker: ConvergenceTracker) -> None:
        self.tracker = tracker

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if self.tracker.converged:
            logger.info("The ULD assistant converged after %d steps: %s.", state.global_step, self.tracker.describe())
            control.should_training_stop = True
        return control

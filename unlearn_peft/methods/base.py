"""What an unlearning method is to [`UnlearnTrainer`]: one object per method, registered by name.

A method says which model it trains (ULD's assistant view, or an adapter on the whole model), its defaults, which
extra rows it trains on, which reference log-probabilities its loss needs, its forget and retain terms (calling
the pure functions of `unlearn_peft.losses`), and how its model card names and cites it. The trainer keeps the
shared machinery (data, counting, logging, saving) and asks the method for everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from datasets import Dataset
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..answer_tokens import AnswerTokens
from ..assistant import projection_lora_config
from ..data import StepCounts, TokenBatch, UnlearningBatch
from ..losses import nll_loss, reference_kl_loss
from ..quiet import peft_wrapping

if TYPE_CHECKING:
    from ..config import UnlearnConfig

Tokenize = Callable[[Dataset, str], Dataset]
"""`tokenize(rows, name)`: the trainer's tokenisation of a dataset (chat template, answer-only labels)."""


@dataclass(frozen=True)
class ForgetTerm:
    """A method's forget loss, and what it is a mean over (for logging across processes).

    Attributes:
        loss: the term, already divided by `global_count`.
        global_count: the optimiser step's count it was divided by (`counts.forget_tokens` for token-level
            losses, `counts.forget_sequences` for sequence-level ones); `None` outside training.
        local_count: this micro-batch's count of the same unit.
    """

    loss: torch.Tensor
    global_count: torch.Tensor | None
    local_count: torch.Tensor


class UnlearningMethod:
    """Base class of the methods. Subclasses set the class attributes and implement `forget_term`."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]]
    """Values of the `UnlearnConfig` fields left at `None`: learning_rate, lr_scheduler_type,
    forget/retain_loss_weight, min_train_steps, retain_loss, beta."""
    trains_assistant: ClassVar[bool] = False
    """`True`: the adapter sits on an early-exit view of the first K layers (ULD); `False`: on every layer."""
    reference_groups: ClassVar[tuple[str, ...]] = ()
    """Groups of the [`UnlearningBatch`] whose `reference_log_prob` `forget_term` reads (`"forget"`, `"refusal"`)."""

    def assistant_num_layers(self, model: PreTrainedModel, args: UnlearnConfig) -> int | None:
        """How many layers the trained view has; `None` when the adapter covers the whole model."""
        return None

    def wrap_model(self, model: PreTrainedModel, peft_config: PeftConfig | None, args: UnlearnConfig) -> PeftModel:
        """The trained model: here a LoRA on every layer of `model`, in place; its reference is the same model with
        the adapter disabled (no second copy)."""
        with peft_wrapping():
            return get_peft_model(model, peft_config or default_baseline_lora_config(model))

    def forget_augmentation(self, forget: Dataset, args: UnlearnConfig) -> Dataset | None:
        """Extra forget rows derived from the forget set (ULD: paraphrased answers)."""
        return None

    def retain_augmentation(self, forget: Dataset, args: UnlearnConfig) -> Dataset | None:
        """Extra retain rows derived from the forget set (ULD: perturbed answers)."""
        return None

    def add_forget_columns(
        self, forget_tokens: Dataset, forget: Dataset, tokenize: Tokenize, args: UnlearnConfig
    ) -> Dataset:
        """Columns the loss needs next to the tokenised forget rows (IdkDPO: the refusal answers, as
        `refusal_input_ids` / `refusal_labels`, which the collator turns into the batch's `refusal` group)."""
        return forget_tokens

    def forget_term(
        self,
        answers: dict[str, AnswerTokens],
        batch: UnlearningBatch,
        counts: StepCounts,
        args: UnlearnConfig,
    ) -> ForgetTerm:
        """The forget loss `L_f` of one micro-batch.

        Args:
            answers: the trained model's answer tokens per group of `batch` (`"forget"`, and `"refusal"` when the
                batch has one).
            batch: the micro-batch, with cached `reference_log_prob` on the groups of `reference_groups`.
            counts: what the optimiser step's terms are means over.
            args: the run's configuration.
        """
        raise NotImplementedError

    def uses_retain(self, args: UnlearnConfig) -> bool:
        return args.retain_loss_weight > 0 and args.retain_loss != "none"

    def retain_term(
        self,
        answer: AnswerTokens,
        reference_answer: Callable[[], AnswerTokens],
        counts: StepCounts,
        args: UnlearnConfig,
    ) -> torch.Tensor:
        """Baselines: NLL on the retain answers (`retain_loss="nll"`, gradient descent) or
        `KL(π_ref ‖ π_θ)` to the reference model (`"kl"`)."""
        if args.retain_loss == "nll":
            return nll_loss(answer, counts.retain_tokens)
        return reference_kl_loss(answer, reference_answer(), counts.retain_tokens)

    def add_retain_columns(
        self, retain_tokens: Dataset, model: PreTrainedModel, pad_token_id: int, args: UnlearnConfig
    ) -> Dataset:
        """Columns the retain terms need next to the tokenised retain rows, computed once before training with the
        target `model` (ULD: the target's plausible tokens at each retain answer position)."""
        return retain_tokens

    def extra_retain_terms(
        self, answer: AnswerTokens, retain: TokenBatch, counts: StepCounts, args: UnlearnConfig
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """Further terms on the retain answers, `name → (weight, value)`: each is added to the loss and logged as
        `loss_<name>`; convergence reads `loss_retain` only."""
        return {}

    def retain_loss_name(self, args: UnlearnConfig) -> str | None:
        """How the sidecar and the card name the retain term."""
        return args.retain_loss

    def read_target(
        self, model: PreTrainedModel, forget_tokens: Dataset, pad_token_id: int, args: UnlearnConfig
    ) -> dict[str, Any]:
        """What the method reads from the target `model` on the tokenised forget rows once, before training (ULD:
        its mean answer probability there, which decides how the assistant is subtracted). Recorded in the
        sidecar's `training` record and passed to `sidecar_fields`."""
        return {}

    def sidecar_fields(
        self, args: UnlearnConfig, tokenizer: PreTrainedTokenizerBase, target_reading: dict[str, Any]
    ) -> dict[str, Any]:
        """Method-specific fields of the sidecar (ULD: α, τ, the filter floor, the tokens never subtracted), given
        what `read_target` returned."""
        return {}

    def training_fields(self, args: UnlearnConfig, retain_columns: list[str]) -> dict[str, Any]:
        """Method-specific entries of the sidecar's `training` record, given the columns of the prepared retain
        rows (after `add_retain_columns`)."""
        return {}

    def card_title(self, retain_loss: str | None) -> str:
        suffix = {"nll": " + gradient descent on retain", "kl": " + KL on retain"}.get(retain_loss or "none", "")
        return self.title + suffix


def default_baseline_lora_config(model: nn.Module) -> LoraConfig:
    """LoRA of the baselines: r=16, alpha=32, dropout 0.05 on the attention and MLP projections of every layer."""
    return projection_lora_config(model, r=16, lora_alpha=32)


# The baselines' defaults (a LoRA on every layer, lr 1e-4, gradient descent on retain); each method changes a few.
BASELINE_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "lr_scheduler_type": "linear",
    "forget_loss_weight": 1.0,
    "retain_loss_weight": 1.0,
    "min_train_steps": 0,
    "retain_loss": "nll",
    "beta": None,
}

METHODS: dict[str, UnlearningMethod] = {}


def register_method(method: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Make `method` available as `UnlearnConfig(method=method.name)` (usable as a class decorator)."""
    METHODS[method.name] = method()
    return method


def get_method(name: str) -> UnlearningMethod:
    """The registered method called `name`; an unknown name raises listing the registered ones."""
    if name not in METHODS:
        raise ValueError(f"Unknown unlearning method {name!r}. Registered: {', '.join(METHODS)}.")
    return METHODS[name]


def sequence_count(labels: torch.Tensor) -> torch.Tensor:
    """This micro-batch's number of forget sequences (the unit of sequence-level losses)."""
    return torch.tensor(labels.shape[0], device=labels.device)

"""`UnlearnConfig`: the training arguments of [`UnlearnTrainer`]."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from .logit_difference import DEFAULT_MIN_TOKENS_TO_KEEP, check_subtraction_margin
from .methods import METHODS, get_method

RETAIN_LOSSES: tuple[str, ...] = ("none", "nll", "kl")
SUPPORTED_METHODS: tuple[str, ...] = tuple(METHODS)
# Per-method defaults, each defined with its method in `unlearn_peft/methods/` (kept here under its old name).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {name: method.defaults for name, method in METHODS.items()}


@dataclass
class UnlearnConfig(TrainingArguments):
    r"""
    Configuration class for [`UnlearnTrainer`].

    Extends [`~transformers.TrainingArguments`] with the unlearning-specific parameters below. Defaults follow the
    ULD paper (Ji et al. 2024, "Reversing the Forget-Retain Objectives", arXiv 2406.08607) for `method="uld"`.

    Where the paper and its reference code differ, we follow the paper and say so:

    - `retain_loss_weight`: paper 6.5, reference code 5.0. Default 6.5.
    - The retain loss averages `KL(uniform ‖ p)` over retain *answer* tokens only; the reference code averages it
      over every position, prompt and padding included.
    - Augmented rows are built deterministically, in dataset order; the reference draws them from a Python `set`,
      so two runs of it differ.
    - The paper's "10 epochs" assumes hundreds of forget rows. On a small forget set, 10 epochs is a few dozen
      steps, far from convergence, so training runs at least `min_train_steps` optimiser steps (extending the
      number of epochs when needed), and warns at the end when the assistant has not converged.
    - Not in the paper: the retain term also asks the assistant to be flat on the target's plausible tokens
      (`plausible_retain_loss_weight`, 0.3 with the whole target), the only tokens the subtraction reads; the
      paper's term alone changed more retained answers (`benchmarks/RESULTS.md`).

    Baselines (`method` other than `"uld"`) train a LoRA adapter on every decoder layer of the model itself
    (r=16, alpha=32, dropout 0.05 on q/k/v/o/gate/up/down) with learning rate 1e-4: open-unlearning uses 1e-5 for
    full fine-tuning, and LoRA updates a low-rank slice of each matrix, so it needs a larger step (the usual 10×)
    to move the model as far in the same number of epochs. Their reference model is the same model with the adapter
    disabled, and reference log-probabilities on the forget set are computed once before training.

    Parameters:
        method (`str`, defaults to `"uld"`):
            Unlearning method. `"uld"`: train an assistant on the first `assistant_num_layers` layers to remember the
            forget set and forget the retain set; the unlearned model is `target − α · assistant`. Baselines:
            `"ga"` (gradient ascent), `"npo"`, `"simnpo"`, `"idk_dpo"` (DPO towards a refusal). Combine a baseline
            with `retain_loss` for GD (`ga` + `nll`), GA+KL, NPO+GD, NPO+KL, ...
        retain_loss (`str` or `None`, defaults to `None`):
            Retain term of a baseline: `"none"`, `"nll"` (gradient descent on retain) or `"kl"` (`KL(π_ref ‖ π)`
            on retain answer tokens). `None`: `"none"` for `ga`, `"nll"` for the others. ULD's retain term is
            fixed (`KL(uniform ‖ p)`, plus `plausible_retain_loss_weight`'s term), so it must stay `None` there.
        beta (`float` or `None`, defaults to `None`):
            Inverse temperature of `npo` (0.1), `simnpo` (4.5) and `idk_dpo` (0.1); `None` uses those defaults.
        simnpo_delta (`float`, defaults to `0.0`):
            SimNPO's reward margin δ.
        precompute_reference_log_probs (`bool`, defaults to `True`):
            For `npo` and `idk_dpo`: compute `log π_ref` of the forget answers once before training (they never
            change) rather than with an extra reference forward at every step.
        refusal_answers (`list[str]` or `None`, defaults to `None`):
            Chosen answers of `idk_dpo`; row `i` uses entry `i mod n`. `None`: a shipped list of
            "I don't know"-style refusals ([`~unlearn_peft.data.DEFAULT_REFUSAL_ANSWERS`]).
        assistant_num_layers (`int` or `None`, defaults to `None`):
            Number K of decoder layers of the assistant. `None` uses a quarter of the model's layers (at least 1):
            8 for a 32-layer model, as in the paper.
        assistant_weight (`float` or `None`, defaults to `None`):
            Weight α of the assistant's logits at inference, recorded in the adapter's sidecar. `None`: 0.6 with the
            paper's two-sided subtraction, 1.0 with the one-sided one (`one_sided_subtraction`). 0.6 was chosen by
            measurement (`benchmarks/assistant_weight.py`): of the α measured, the smallest that forgets a memorised
            target's answers to ≤ 0.01× of their probability with the paper's two-sided subtraction; the paper's 0.75
            costs retained and general knowledge there for next to no more forgetting.
        plausibility_threshold (`float`, defaults to `1e-2`):
            The assistant's logits only count on tokens whose target probability is at least this fraction of the
            target's top probability at that position. `0` disables the filter. Recorded in the sidecar.
        min_tokens_to_keep (`int`, defaults to `10`):
            Floor of the plausible set: the target's `min_tokens_to_keep` most probable tokens always count, so a
            target that has memorised an answer (one token with p ≈ 1) does not switch the assistant off there.
            Recorded in the sidecar. Chosen by measurement (`benchmarks/filter_definitions.py`).
        weight_by_assistant_mass (`bool`, defaults to `False`):
            Scale the assistant's filtered logits at each position by its probability mass on the plausible tokens,
            so an assistant that is flat there (retain data) changes nothing and one sure of a plausible answer
            (forget data) subtracts as before. Not in the paper; see `unlearn_peft.logit_difference`. Recorded in
            the sidecar. Measured (`benchmarks/assistant_weight.py`, three seeds on each of two small targets, one
            fine-tuned on the forget answers and one that knows the facts without it): every retained answer kept
            (the plain filter loses some), but 15 of 216 forgotten facts stated again in greedy answers (plain: 2).
        one_sided_subtraction (`bool` or `None`, defaults to `None`):
            Clip the assistant's centred log-probabilities at zero, so it only lowers the plausible tokens it
            prefers (the answer it remembers) and never raises those it rejects, which the target then orders
            itself. Not in the paper; see `unlearn_peft.logit_difference`. Recorded in the sidecar. `None`: on when
            the target has memorised the forget answers (`memorised_forget_probability`), off otherwise. It forgets
            less at the same α (a memorised target kept 0.052× of its forget answers' probability at α = 0.6, 0.000×
            at α = 1), hence α 1 with it when `assistant_weight` is `None`.
        subtraction_margin (`float` or `None`, defaults to `None`):
            With `one_sided_subtraction`, lower the clipped log-probabilities by this many nats first,
            `max(0, f(z_A) − δ)`: the assistant lowers a token only by how much it prefers it beyond δ over the
            plausible set's average. The assistant prefers a remembered answer by ≥ 7.5 nats and anything else by
            ≤ 3.4 in the small targets measured, so a margin of about 2 drops the noise that changes retained answers.
            Not in the paper; recorded in the sidecar. `None`: 2 when the target has memorised the forget answers and
            the subtraction is one-sided, else 0. Measured (δ 2 at α 1, `benchmarks/RESULTS.md`): on two memorised
            targets (fictitious people, and TOFU in small) every retained answer unchanged with every forget goal
            met; on a target that knew its facts without memorising them, 1–4 of 40 forgotten facts came back in
            greedy answers, hence only for memorised targets.
        memorised_forget_probability (`float`, defaults to `0.9`):
            ULD: the target counts as having memorised the forget answers when its mean answer probability on the
            forget rows (per row `exp(−mean NLL of the answer tokens)`, TOFU's probability) is at least this. It is
            read from the target once, before training, and recorded in the sidecar; it decides the settings left
            at `None` above and below: one-sided subtraction with margin 2 at α 1 for a memorised target, the paper's
            two-sided subtraction at α 0.6 with the special tokens exempt otherwise. Measured: SmolLM2 fine-tuned on
            its forget answers 0.96 (fictitious people) and 0.96 (TOFU authors); SmolLM2 on European capitals it
            knows, 0.78. With only the assistant's layers loaded the target cannot be read, and the settings of a
            target that has not memorised apply.
        exempt_special_tokens (`bool` or `None`, defaults to `None`):
            Never subtract the assistant on the tokenizer's special tokens (end of turn, end of text): the target's
            logits stand there. They carry no fact to forget, but the assistant learns where the forget answers end
            along with what they say, and subtracting that moves where the target ends the answers it keeps. The
            token ids are recorded in the sidecar (`[]` when off). Not in the paper. `None`: on when the target has
            not memorised the forget answers (`memorised_forget_probability`), off when it has. Measured
            (`benchmarks/RESULTS.md`): on the demo's target (not memorised), nine assistants, held-out general
            knowledge 0.931–1.036× of the base with it (0.954–1.036× on the six trained at today's defaults)
            against 0.874–1.041× without, forgetting unchanged; on TOFU in small (memorised) forget quality fell
            from 0.405 to 0.097 at the same utility with the two-sided subtraction (the truth ratios score the end of
            turn), hence off there.
        plausible_retain_loss_weight (`float` or `None`, defaults to `None`):
            ULD: weight, relative to `retain_loss_weight`, of a second retain term that makes the assistant flat on
            the target's plausible tokens at each retain answer position, the only tokens where it is subtracted
            ([`~unlearn_peft.losses.plausible_uniform_kl_loss`]); the target's plausible tokens are read once before
            training. Not in the paper. `None`: 0.3 when [`UnlearnTrainer`] holds the whole target, and 0 (the
            paper's term alone, said in the log) when it loaded only the assistant's layers, which cannot give the
            target's predictions; an explicit weight > 0 in that case warns. Measured at α = 0.6
            (`benchmarks/assistant_weight.py`, `benchmarks/RESULTS.md`): at 0.3, retain probability 1.007× and
            0.980× on the demo's capitals (two seeds; the paper's term alone: 0.951–0.963× over three) and 0.997× on
            a memorised target, held-out general knowledge 0.963×, 0.951× and 0.988×, no forgotten or paraphrased
            fact stated, 13, 13 and 14 of 15 retained facts still stated (paper's term: 11, 11, 11 and 14); at 1.0
            retain rose further (0.989×, 1.000×) but held-out general knowledge fell to 0.938× and 0.946×.
        forget_loss_weight (`float` or `None`, defaults to `None`):
            Weight of the forget term: 0.125 for `simnpo` (γ of open-unlearning's SimNPO config), 1.0 for the others.
        retain_loss_weight (`float` or `None`, defaults to `None`):
            Weight of the retain term: 6.5 for ULD (paper), 1.0 for the baselines.
        max_length (`int` or `None`, defaults to `512`):
            Maximum tokenised length of a row. Longer rows are truncated from the right, with one warning that
            counts them. `None` disables truncation.
        augment_forget_with_paraphrases (`bool`, defaults to `False`):
            When forget rows carry `paraphrased_answer` / `paraphrased_question` (TOFU's `*_perturbed` splits),
            add (question, paraphrased answer) and (paraphrased question, answer) rows to the forget set (ULD paper
            §3.3). Off by default, by measurement (`benchmarks/tofu_augmentations.py`): on a target that memorised
            TOFU's forget01 rows it dropped forget quality from 0.41 to 1e-7 (the unlearned model pushes the
            paraphrased answers far below where a model that never saw them puts them) and one question with two
            answers keeps the assistant's forget NLL from converging.
        augment_retain_with_perturbed (`bool`, defaults to `False`):
            When forget rows carry `perturbed_answer`, add each (question, perturbed answer) pair to the retain set:
            wrong answers about the forget subjects that the assistant must *not* remember (ULD paper §3.3). Only
            their wrong tokens are labelled (see [`~unlearn_peft.data.wrong_answer_positions`]); rows with none are
            dropped with a warning. Off by default, by measurement (`benchmarks/tofu_augmentations.py`): with both
            augmentations on, the assistant did not converge in the 300-step budget on TOFU's forget01 rows
            (forget NLL 3.4) and forget quality was 0.05 against 0.41 without either.
        min_train_steps (`int` or `None`, defaults to `None`):
            Minimum number of optimiser steps. When `num_train_epochs` gives fewer, the number of epochs grows until
            it reaches this budget (logged). `0` disables it. Ignored when `max_steps` is set. `None`: 800 for ULD
            (the assistant must converge; with `stop_when_converged` it stops earlier, 546 steps with TOFU in
            small's 324 retain rows), 0 for the baselines (more steps only unlearn harder).
        stop_when_converged (`bool`, defaults to `True`):
            ULD: stop as soon as the assistant has converged (see [`~unlearn_peft.convergence`]); the planned steps
            (`max_steps`, or `num_train_epochs` extended to `min_train_steps`) are then a budget. The sidecar and
            the model card record whether it converged, its final losses and the steps taken.
        converged_forget_nll (`float`, defaults to `0.01`):
            ULD: converged needs the mean forget NLL over the last `convergence_window` batches at most this.
        converged_retain_kl (`float`, defaults to `0.4`):
            ULD: converged needs the mean `KL(uniform ‖ assistant)` on retain answers over the window at most this.
            An early-exit assistant cannot be exactly uniform (its logits are the tied embeddings times a normalised
            hidden state); on SmolLM2 the retain KL levels off near 0.34 (`benchmarks/RESULTS.md`).
        convergence_window (`int`, defaults to `10`):
            ULD: how many of the latest training batches the convergence means cover.
        model_init_kwargs (`dict` or `str` or `None`, defaults to `None`):
            Keyword arguments for [`~transformers.AutoModelForCausalLM.from_pretrained`], used when `model` is a
            string. A JSON string is accepted (for the command line). `dtype` may be a string such as `"bfloat16"`.
            To train with QLoRA pass `{"quantization_config": BitsAndBytesConfig(load_in_4bit=True, ...)}`.
    """

    _VALID_DICT_FIELDS = [*TrainingArguments._VALID_DICT_FIELDS, "model_init_kwargs"]

    method: str = field(
        default="uld",
        metadata={"help": f"Unlearning method. One of: {', '.join(SUPPORTED_METHODS)}."},
    )
    retain_loss: str | None = field(
        default=None,
        metadata={
            "help": f"Retain term of a baseline: one of {', '.join(RETAIN_LOSSES)}. Default: none for ga, nll for "
            "the others. Must stay unset for uld."
        },
    )
    beta: float | None = field(
        default=None,
        metadata={"help": "Inverse temperature of npo (0.1), simnpo (4.5) and idk_dpo (0.1); None for those."},
    )
    simnpo_delta: float = field(default=0.0, metadata={"help": "SimNPO's reward margin delta."})
    precompute_reference_log_probs: bool = field(
        default=True,
        metadata={
            "help": "npo / idk_dpo: compute the reference log-probs of the forget answers once before training "
            "(True) instead of with an extra forward at every step (False)."
        },
    )
    refusal_answers: list[str] | None = field(
        default=None,
        metadata={"help": "Chosen (refusal) answers for idk_dpo; None uses the shipped 'I don't know' list."},
    )
    assistant_num_layers: int | None = field(
        default=None,
        metadata={
            "help": "Number of decoder layers K of the ULD assistant. Default: a quarter of the model's layers "
            "(at least 1)."
        },
    )
    assistant_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight α of the assistant's logits at inference (logits = target − α · assistant); the paper "
            "uses 0.75. None: 0.6, or 1 with the one-sided subtraction."
        },
    )
    plausibility_threshold: float = field(
        default=1e-2,
        metadata={
            "help": "Assistant logits only count on tokens whose target probability is at least this fraction of "
            "the target's top probability. 0 disables the filter."
        },
    )
    min_tokens_to_keep: int = field(
        default=DEFAULT_MIN_TOKENS_TO_KEEP,
        metadata={
            "help": "Floor of the plausible set: the target's this many most probable tokens always count, so a "
            "memorised answer (p ≈ 1 on one token) can still be unlearned."
        },
    )
    weight_by_assistant_mass: bool = field(
        default=False,
        metadata={
            "help": "Scale the assistant's filtered logits at each position by its probability mass on the target's "
            "plausible tokens (about 0 where the assistant is flat, 1 where it remembers). Not in the paper."
        },
    )
    one_sided_subtraction: bool | None = field(
        default=None,
        metadata={
            "help": "Clip the assistant's centred log-probabilities on the plausible tokens at zero: it only lowers "
            "the tokens it prefers and never raises the ones it rejects. Not in the paper; forgets less at the same "
            "α. None: on when the target has memorised the forget answers, off otherwise."
        },
    )
    subtraction_margin: float | None = field(
        default=None,
        metadata={
            "help": "With one_sided_subtraction: lower the assistant's clipped centred log-probabilities by this many "
            "nats first, max(0, f - margin), so only what it prefers by more than the margin is subtracted. Not in "
            "the paper. None: 2 on a memorised target with the one-sided subtraction, else 0."
        },
    )
    memorised_forget_probability: float = field(
        default=0.9,
        metadata={
            "help": "uld: the target has memorised the forget answers when its mean answer probability on the forget "
            "rows reaches this (read once before training, recorded in the sidecar); it decides assistant_weight, "
            "one_sided_subtraction, subtraction_margin and exempt_special_tokens left unset."
        },
    )
    exempt_special_tokens: bool | None = field(
        default=None,
        metadata={
            "help": "Never subtract the assistant on the tokenizer's special tokens (end of turn, end of text), so "
            "the unlearned model ends its answers where the target does. Not in the paper. None: on when the target "
            "has not memorised the forget answers, off when it has."
        },
    )
    plausible_retain_loss_weight: float | None = field(
        default=None,
        metadata={
            "help": "uld: weight, relative to retain_loss_weight, of KL(uniform on the target's plausible tokens ‖ "
            "assistant on them) at retain answer positions. Not in the paper. None: 0.3 with the whole target, 0 "
            "when only the assistant's layers were loaded; 0 trains the paper's retain term alone."
        },
    )
    forget_loss_weight: float | None = field(
        default=None,
        metadata={"help": "Weight of the forget term. None: 0.125 for simnpo (open-unlearning's gamma), 1.0 else."},
    )
    retain_loss_weight: float | None = field(
        default=None,
        metadata={"help": "Weight of the retain loss term. None: 6.5 for uld (paper; reference code: 5.0), 1.0 else."},
    )
    max_length: int | None = field(
        default=512,
        metadata={
            "help": "Maximum tokenised length of a row; longer rows are truncated from the right with a warning. "
            "None disables truncation."
        },
    )
    augment_forget_with_paraphrases: bool = field(
        default=False,
        metadata={
            "help": "uld: add (question, paraphrased_answer) and (paraphrased_question, answer) rows to the forget "
            "set when those columns exist (ULD paper §3.3; off by default, by measurement)."
        },
    )
    augment_retain_with_perturbed: bool = field(
        default=False,
        metadata={
            "help": "uld: add each forget row's perturbed_answer entries as extra retain rows when that column "
            "exists, labelled on their wrong tokens only (ULD paper §3.3; off by default, by measurement)."
        },
    )
    min_train_steps: int | None = field(
        default=None,
        metadata={
            "help": "Minimum number of optimiser steps; epochs are extended to reach it on small forget sets. "
            "0 disables it. Ignored when max_steps is set. None: 800 for uld (a budget: it stops once converged), "
            "0 for the baselines."
        },
    )
    load_assistant_layers_only: bool = field(
        default=True,
        metadata={
            "help": "uld, with `model` given as an id or path: load (and download) only the embeddings, the first K "
            "layers, the final norm and the LM head, which is all the assistant runs. The sidecar still describes "
            "the full base."
        },
    )
    stop_when_converged: bool = field(
        default=True,
        metadata={
            "help": "uld: stop once the assistant converged (both loss means within their thresholds); the planned "
            "steps are then a budget."
        },
    )
    converged_forget_nll: float = field(
        default=0.01,
        metadata={
            "help": "uld: converged needs the forget NLL's mean over the window at most this (0.01: the assistant "
            "gives each forget answer token about 0.99; at 0.2 it stopped before retained answers recovered)."
        },
    )
    converged_retain_kl: float = field(
        default=0.4,
        metadata={"help": "uld: converged needs the mean retain KL(uniform || assistant) over the window ≤ this."},
    )
    convergence_window: int = field(
        default=10,
        metadata={"help": "uld: number of latest training batches the convergence means cover."},
    )
    model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments for AutoModelForCausalLM.from_pretrained when `model` is a string "
            "(a dict or a JSON string)."
        },
    )

    # Defaults of TrainingArguments that ULD changes (paper, §4 and appendix).
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Initial learning rate for AdamW. None: 3e-3 for uld (the paper's 1e-3 did not converge on "
            "TOFU-length answers, benchmarks/RESULTS.md), 1e-4 for LoRA baselines."
        },
    )
    lr_scheduler_type: str | None = field(
        default=None,
        metadata={
            "help": "Learning-rate schedule (a transformers SchedulerType). None: constant after warm-up for uld (it "
            "trains until converged; a decay to 0 over the step budget slowed it), linear for the baselines."
        },
    )
    num_train_epochs: float = field(default=10.0, metadata={"help": "Number of training epochs (ULD paper: 10)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (ULD paper: 0.01)."})
    warmup_steps: float = field(
        default=0.1,
        metadata={"help": "Linear warm-up: a number of steps (≥ 1) or a fraction of all steps (< 1). Default: 0.1."},
    )
    logging_steps: float = field(
        default=10,
        metadata={"help": "Log every X update steps (an integer, or a fraction of all steps when < 1)."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the trainer builds its own forget/retain batches."},
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"UnlearnConfig: unknown method={self.method!r}. Choose one of: {', '.join(METHODS)}.")
        if self.method == "uld" and self.retain_loss is not None:
            raise ValueError(
                f"UnlearnConfig: retain_loss={self.retain_loss!r} does not apply to method='uld', whose retain term "
                "is fixed (KL(uniform ‖ assistant)). Leave retain_loss unset."
            )
        if self.retain_loss is not None and self.retain_loss not in RETAIN_LOSSES:
            raise ValueError(
                f"UnlearnConfig: unknown retain_loss={self.retain_loss!r}. Choose one of: {', '.join(RETAIN_LOSSES)}."
            )
        for name, value in get_method(self.method).defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.lr_scheduler_type is None:  # a method whose defaults leave it unset gets TrainingArguments' default
            self.lr_scheduler_type = "linear"
        if self.beta is not None and self.beta <= 0:
            raise ValueError(f"UnlearnConfig: beta={self.beta} must be > 0.")
        if self.refusal_answers is not None and not [a for a in self.refusal_answers if str(a).strip()]:
            raise ValueError(
                "UnlearnConfig: refusal_answers is empty; idk_dpo needs at least one refusal answer (or None for the "
                "shipped list)."
            )
        if self.assistant_num_layers is not None and self.assistant_num_layers < 1:
            raise ValueError(
                f"UnlearnConfig: assistant_num_layers={self.assistant_num_layers} must be ≥ 1 (or None for a "
                "quarter of the model's layers)."
            )
        if self.plausibility_threshold < 0 or self.plausibility_threshold >= 1:
            raise ValueError(
                f"UnlearnConfig: plausibility_threshold={self.plausibility_threshold} must be in [0, 1); "
                "0 disables the filter."
            )
        if self.min_tokens_to_keep < 1:
            raise ValueError(
                f"UnlearnConfig: min_tokens_to_keep={self.min_tokens_to_keep} must be ≥ 1 (the target's top tokens "
                "that always count in the plausibility filter)."
            )
        if self.subtraction_margin is not None:
            check_subtraction_margin(self.subtraction_margin, bool(self.one_sided_subtraction))
        if not 0 < self.memorised_forget_probability <= 1:
            raise ValueError(
                f"UnlearnConfig: memorised_forget_probability={self.memorised_forget_probability} must be in (0, 1]; "
                "1 treats no target as memorised unless it is certain of every answer token."
            )
        if self.forget_loss_weight < 0 or self.retain_loss_weight < 0:
            raise ValueError(
                "UnlearnConfig: forget_loss_weight and retain_loss_weight must be ≥ 0, got "
                f"{self.forget_loss_weight} and {self.retain_loss_weight}."
            )
        if self.plausible_retain_loss_weight is not None and self.plausible_retain_loss_weight < 0:
            raise ValueError(
                f"UnlearnConfig: plausible_retain_loss_weight={self.plausible_retain_loss_weight} must be ≥ 0 "
                "(0 trains the paper's retain term alone)."
            )
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"UnlearnConfig: max_length={self.max_length} must be ≥ 2 or None.")
        if self.convergence_window < 1 or self.converged_forget_nll <= 0 or self.converged_retain_kl <= 0:
            raise ValueError(
                f"UnlearnConfig: convergence_window={self.convergence_window} must be ≥ 1 and converged_forget_nll="
                f"{self.converged_forget_nll}, converged_retain_kl={self.converged_retain_kl} must be > 0."
            )
        if self.min_train_steps < 0:
            raise ValueError(f"UnlearnConfig: min_train_steps={self.min_train_steps} must be ≥ 0.")
        if isinstance(self.model_init_kwargs, str):
            try:
                self.model_init_kwargs = json.loads(self.model_init_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"UnlearnConfig: model_init_kwargs is not valid JSON ({error}); pass a dict or a JSON object "
                    'string such as \'{"dtype": "bfloat16"}\'.'
                ) from error
        if self.model_init_kwargs is not None and not isinstance(self.model_init_kwargs, dict):
            raise ValueError(
                f"UnlearnConfig: model_init_kwargs must be a dict or a JSON object string, got "
                f"{type(self.model_init_kwargs).__name__}."
            )
        super().__post_init__()

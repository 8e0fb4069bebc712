"""`UnlearnTrainer`: a TRL-style trainer for LLM unlearning with LoRA / QLoRA adapters."""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import PeftConfig, PeftModel
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    DataCollator,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    Trainer,
    TrainerCallback,
)
from transformers.trainer import TRAINING_ARGS_NAME as TRAINING_ARGS_PICKLE
from transformers.trainer_utils import set_seed

from .answer_tokens import AnswerTokens, forward_answer_tokens
from .assistant import resolve_assistant_num_layers
from .config import UnlearnConfig
from .convergence import ConvergenceTracker, StopWhenConverged
from .data import (
    ForgetRetainCollator,
    ForgetRetainDataset,
    as_dataset,
    concatenate_tokenized,
    tokenize_dataset,
)
from .hub import push_adapter
from .losses import (
    count_loss_tokens,
    sequence_log_probs,
)
from .methods import get_method
from .model_card import render_model_card
from .quiet import announce_quantization_messages
from .reference import reference_sequence_log_probs
from .saving import staged_save
from .sidecar import UnlearnSidecar, base_model_fingerprint, base_model_reference
from .truncated import load_assistant_layers, load_config
from .utils import torch_dtype
from .version import __version__

logger = logging.getLogger(__name__)

TRAINING_ARGS_JSON = "training_args.json"


def load_causal_lm(
    model_id: str,
    model_init_kwargs: dict[str, Any] | None,
    *,
    only_assistant_layers: bool = False,
    assistant_num_layers: int | None = None,
) -> PreTrainedModel:
    """Load a causal LM by Hub id or local path with `model_init_kwargs` (TRL conventions).

    With `only_assistant_layers=True`, only the embeddings, the first `assistant_num_layers` decoder layers (default
    a quarter), the final norm and the LM head are loaded, and from the Hub downloaded: see `unlearn_peft.truncated`.
    """
    kwargs = dict(model_init_kwargs or {})
    if kwargs.get("dtype", "auto") != "auto":
        kwargs["dtype"] = torch_dtype(kwargs["dtype"], "model_init_kwargs['dtype']")
    if isinstance(kwargs.get("quantization_config"), dict):
        kwargs["quantization_config"] = BitsAndBytesConfig(**kwargs["quantization_config"])
    if kwargs.get("quantization_config") is not None:
        announce_quantization_messages()
    if kwargs.get("trust_remote_code"):
        raise ValueError("unlearn-peft never runs remote code: remove trust_remote_code from model_init_kwargs.")
    if only_assistant_layers:
        config = load_config(model_id, kwargs)
        num_layers = resolve_assistant_num_layers(assistant_num_layers, config)
        return load_assistant_layers(model_id, num_layers, config, **kwargs)
    return AutoModelForCausalLM.from_pretrained(model_id, **kwargs)


class UnlearnTrainer(Trainer):
    """Trainer for LLM unlearning.

    With `method="uld"` (the default) it trains the assistant of ULD (Ji et al. 2024, arXiv 2406.08607): an
    early-exit view of the model's first K decoder layers (plus its final norm and LM head) that shares the model's
    weights, with a LoRA adapter on those K layers. The assistant learns to remember the forget set (NLL on forget
    answers) and to forget the retain set (`KL(uniform ‖ p)` on retain answers); at inference the unlearned model's
    logits are `target − α · assistant`. Only the LoRA weights train; the forward runs only the K layers.

    With a baseline `method` (`"ga"`, `"npo"`, `"simnpo"`, `"idk_dpo"`, combined with `retain_loss`), it trains a LoRA
    adapter on every layer of the model itself, injected in place as `peft.get_peft_model` does; the reference
    model is the same model with the adapter disabled. The base weights never change in either case.

    Args:
        model (`str` or [`~transformers.PreTrainedModel`]):
            The model to unlearn from: a Hub id or local path (loaded with `args.model_init_kwargs`, which may hold
            a `BitsAndBytesConfig` for QLoRA), or a loaded causal LM. Its weights are never modified.
        args ([`UnlearnConfig`], *optional*):
            Training configuration. Defaults to `UnlearnConfig(output_dir="<model name>-Unlearn")`.
        forget_dataset ([`~datasets.Dataset`] or list of dicts):
            What to unlearn. Formats: prompt-completion, conversational (`messages`), language modelling (`text`),
            or TOFU question-answer (`question`/`answer`, optionally with `paraphrased_answer`,
            `paraphrased_question` and `perturbed_answer` for augmentation).
        retain_dataset ([`~datasets.Dataset`] or list of dicts, *optional*):
            What to keep, in any supported format. Required unless `retain_loss_weight=0`.
        eval_dataset (`dict`, *optional*):
            `{"forget": rows, "retain": rows}`; evaluation reports `eval_loss_forget` and `eval_loss_retain`.
        processing_class ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            Tokenizer. Loaded from the model's checkpoint when `None`.
        peft_config ([`~peft.LoraConfig`], *optional*):
            The assistant's LoRA. Defaults to the paper's r=32, alpha=32, dropout 0.05 on q/k/v/o/gate/up/down of
            layers `0..K-1`. A given config is restricted to those layers (`layers_to_transform`).
        data_collator (`DataCollator`, *optional*):
            Defaults to [`~unlearn_peft.data.ForgetRetainCollator`].
        callbacks (list of [`~transformers.TrainerCallback`], *optional*):
            Extra callbacks.
        optimizers (`tuple`, *optional*):
            `(optimizer, lr_scheduler)`; by default AdamW with a linear schedule.
        forget_dataset_name (`str`, *optional*):
            Name of the forget dataset (a Hub id such as `"locuslab/TOFU:forget10"`, or `"embedded:<name>"`),
            recorded in the sidecar and the model card. Only names are recorded, never contents.
        retain_dataset_name (`str`, *optional*):
            Name of the retain dataset, as `forget_dataset_name`.

    Example:

    ```python
    >>> from unlearn_peft import UnlearnConfig, UnlearnTrainer
    >>> trainer = UnlearnTrainer(
    ...     model="HuggingFaceTB/SmolLM2-135M-Instruct",
    ...     args=UnlearnConfig(output_dir="smollm2-uld"),
    ...     forget_dataset=forget_rows,
    ...     retain_dataset=retain_rows,
    ... )
    >>> trainer.train()
    >>> trainer.save_model()
    ```
    """

    _tag_names = ["unlearn-peft", "unlearning"]

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: UnlearnConfig | None = None,
        forget_dataset: Dataset | Sequence[dict[str, Any]] | None = None,
        retain_dataset: Dataset | Sequence[dict[str, Any]] | None = None,
        eval_dataset: dict[str, Dataset | Sequence[dict[str, Any]]] | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        peft_config: PeftConfig | None = None,
        data_collator: DataCollator | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        *,
        forget_dataset_name: str | None = None,
        retain_dataset_name: str | None = None,
    ) -> None:
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = UnlearnConfig(output_dir=f"{str(model_name).rstrip('/').split('/')[-1]}-Unlearn")
        elif not isinstance(args, UnlearnConfig):
            raise TypeError(f"args must be an UnlearnConfig, got {type(args).__name__}.")

        if isinstance(model, str):
            model = load_causal_lm(
                model,
                args.model_init_kwargs,
                only_assistant_layers=get_method(args.method).trains_assistant and args.load_assistant_layers_only,
                assistant_num_layers=args.assistant_num_layers,
            )
        elif args.model_init_kwargs:
            logger.warning("model_init_kwargs are ignored because `model` is already loaded.")
        if isinstance(model, PeftModel):
            raise ValueError(
                "model is already a PeftModel. Pass the base model and the adapter settings as `peft_config`; "
                "UnlearnTrainer attaches the unlearning adapter itself."
            )
        if not isinstance(model, PreTrainedModel):
            raise TypeError(f"model must be a Hub id, a local path or a PreTrainedModel, got {type(model).__name__}.")

        if processing_class is None:
            if not model.config._name_or_path:
                raise ValueError(
                    "processing_class is required: the model has no checkpoint path to load its tokenizer from. "
                    "Pass processing_class=AutoTokenizer.from_pretrained(...)."
                )
            processing_class = AutoTokenizer.from_pretrained(model.config._name_or_path)
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("The tokenizer has neither a pad token nor an EOS token; set tokenizer.pad_token.")
            tokenizer.pad_token = tokenizer.eos_token

        self.target_model = model
        self.method = args.method
        self.unlearning_method = get_method(args.method)
        self.assistant_num_layers = self.unlearning_method.assistant_num_layers(model, args)
        train_dataset = self._prepare_train_dataset(forget_dataset, retain_dataset, tokenizer, args)
        # Names (never contents) of the datasets, for the sidecar and the model card.
        for key, name in (("forget_dataset", forget_dataset_name), ("retain_dataset", retain_dataset_name)):
            if name is not None:
                self.dataset_summary[key] = name
        prepared_eval = self._prepare_eval_dataset(eval_dataset, tokenizer, args)

        set_seed(args.seed)  # the LoRA's initial weights: the same for the same seed, whatever ran before
        trained_model = self.unlearning_method.wrap_model(model, peft_config, args)

        if data_collator is None:
            data_collator = ForgetRetainCollator(pad_token_id=tokenizer.pad_token_id)

        super().__init__(
            model=trained_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=prepared_eval,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        # compute_loss divides by the token count of the whole optimiser step (see `_get_num_items_in_batch`).
        self.loss_is_scaled_for_ga = True
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.last_train_metrics: dict[str, float] = {}
        self._apply_min_train_steps()
        self.convergence: ConvergenceTracker | None = None
        self.convergence_summary: dict[str, Any] = {}
        if self.unlearning_method.trains_assistant:
            self.convergence = ConvergenceTracker(
                args.converged_forget_nll, args.converged_retain_kl, args.convergence_window
            )
            if args.stop_when_converged:
                self.add_callback(StopWhenConverged(self.convergence))
        if self.unlearning_method.reference_groups and args.precompute_reference_log_probs:
            self._cache_reference_log_probs()

    # ------------------------------------------------------------------ data

    def _prepare_train_dataset(
        self,
        forget_dataset: Dataset | Sequence[dict[str, Any]] | None,
        retain_dataset: Dataset | Sequence[dict[str, Any]] | None,
        tokenizer: PreTrainedTokenizerBase,
        args: UnlearnConfig,
    ) -> ForgetRetainDataset:
        forget = as_dataset(forget_dataset, "forget_dataset")
        retain = as_dataset(retain_dataset, "retain_dataset")
        if forget is None or len(forget) == 0:
            raise ValueError("forget_dataset is empty: pass at least one row of what the model must unlearn.")
        if retain is not None and len(retain) == 0:
            raise ValueError(
                "retain_dataset is empty: pass rows the model must keep, or None with retain_loss_weight=0."
            )
        uses_retain = self.unlearning_method.uses_retain(args)
        if retain is None and uses_retain:
            raise ValueError(
                f"retain_dataset is required for method={args.method!r} with retain_loss_weight="
                f"{args.retain_loss_weight} > 0 (retain term: "
                f"{args.retain_loss or 'KL(uniform ‖ assistant)'}). Pass one, or set retain_loss_weight=0."
            )

        paraphrased = self.unlearning_method.forget_augmentation(forget, args)
        perturbed = self.unlearning_method.retain_augmentation(forget, args)
        tokenize = dict(tokenizer=tokenizer, max_length=args.max_length)
        forget_tokens = concatenate_tokenized(
            [
                tokenize_dataset(forget, name="forget_dataset", **tokenize),
                tokenize_dataset(paraphrased, name="forget_dataset (paraphrase augmentation)", **tokenize)
                if paraphrased is not None
                else None,
            ]
        )
        forget_tokens = self.unlearning_method.add_forget_columns(
            forget_tokens, forget, lambda rows, name: tokenize_dataset(rows, name=name, **tokenize), args
        )
        retain_tokens = None
        if retain is not None and uses_retain:
            retain_tokens = concatenate_tokenized(
                [
                    tokenize_dataset(retain, name="retain_dataset", **tokenize),
                    tokenize_dataset(perturbed, name="retain_dataset (perturbed-answer augmentation)", **tokenize)
                    if perturbed is not None and args.retain_loss_weight > 0
                    else None,
                ]
            )
        self.dataset_summary = {
            "forget_rows": len(forget),
            "forget_examples": len(forget_tokens),
            "retain_rows": len(retain) if retain is not None else 0,
            "retain_examples": len(retain_tokens) if retain_tokens is not None else 0,
        }
        logger.info("Unlearning data: %s", self.dataset_summary)
        return ForgetRetainDataset(forget_tokens, retain_tokens)

    def _prepare_eval_dataset(
        self,
        eval_dataset: dict[str, Dataset | Sequence[dict[str, Any]]] | None,
        tokenizer: PreTrainedTokenizerBase,
        args: UnlearnConfig,
    ) -> ForgetRetainDataset | None:
        if eval_dataset is None:
            return None
        if not isinstance(eval_dataset, dict) or "forget" not in eval_dataset:
            raise ValueError(
                "eval_dataset must be a dict {'forget': rows, 'retain': rows}; evaluation reports the assistant's "
                "forget and retain losses."
            )
        unknown = set(eval_dataset) - {"forget", "retain"}
        if unknown:
            raise ValueError(f"eval_dataset has unknown keys {sorted(unknown)}; use 'forget' and 'retain'.")
        tokenize = dict(tokenizer=tokenizer, max_length=args.max_length)
        forget = as_dataset(eval_dataset["forget"], "eval_dataset['forget']")
        if forget is None or len(forget) == 0:
            raise ValueError("eval_dataset['forget'] is empty.")
        retain = as_dataset(eval_dataset.get("retain"), "eval_dataset['retain']")
        return ForgetRetainDataset(
            tokenize_dataset(forget, name="eval_dataset['forget']", **tokenize),
            tokenize_dataset(retain, name="eval_dataset['retain']", **tokenize) if retain is not None else None,
        )

    def _apply_min_train_steps(self) -> None:
        args = self.args
        if args.max_steps > 0 or args.min_train_steps <= 0:
            return
        batches_per_epoch = math.ceil(len(self.train_dataset) / (args.per_device_train_batch_size * args.world_size))
        steps_per_epoch = max(math.ceil(batches_per_epoch / args.gradient_accumulation_steps), 1)
        planned_steps = math.ceil(args.num_train_epochs * steps_per_epoch)
        if planned_steps < args.min_train_steps:
            epochs = math.ceil(args.min_train_steps / steps_per_epoch)
            logger.warning(
                "num_train_epochs=%s gives only %d optimiser steps on %d forget examples; allowing %d epochs "
                "(%d steps) to reach min_train_steps=%d, which small forget sets need to converge.",
                args.num_train_epochs,
                planned_steps,
                len(self.train_dataset),
                epochs,
                epochs * steps_per_epoch,
                args.min_train_steps,
            )
            args.num_train_epochs = float(epochs)

    # ------------------------------------------------------------------ loss

    def _cache_reference_log_probs(self) -> None:
        """Store `log π_ref(y|x)` of every forget example (and of its refusal, for idk_dpo) before training."""
        forget = self.train_dataset.forget
        # A batch group `forget_<side>` comes from the forget rows' columns `<side>_input_ids`, `<side>_labels`.
        sides = [group.removeprefix("forget").lstrip("_") for group in self.unlearning_method.reference_groups]
        for side in sides:
            prefix = f"{side}_" if side else ""
            input_ids_column, labels_column = f"{prefix}input_ids", f"{prefix}labels"
            output_column = f"{prefix}reference_log_prob"
            values = reference_sequence_log_probs(
                self.model,
                forget,
                self.data_collator,
                input_ids_column=input_ids_column,
                labels_column=labels_column,
                batch_size=self.args.per_device_eval_batch_size,
                device=self.args.device,
                description=f"Reference log-probs ({output_column})",
                disable_progress=self.args.disable_tqdm,
            )
            forget = forget.add_column(output_column, values)
        self.train_dataset.forget = forget

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> dict[str, torch.Tensor] | None:
        """Counted items of the whole optimiser step, over all processes: answer tokens per term (`forget`,
        `retain`) and forget sequences (`forget_sequences`, for the sequence-level losses)."""
        if not batch_samples:
            return None
        counts: dict[str, torch.Tensor] = {}
        for term in ("forget", "retain"):
            key = f"{term}_labels"
            if key in batch_samples[0]:
                counts[term] = sum(count_loss_tokens(batch[key]) for batch in batch_samples).to(device)
        if "forget_input_ids" in batch_samples[0]:
            counts["forget_sequences"] = torch.tensor(
                sum(batch["forget_input_ids"].shape[0] for batch in batch_samples), device=device
            )
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = {name: self.accelerator.gather(count).sum() for name, count in counts.items()}
        return counts or None

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """`forget_loss_weight · L_f + retain_loss_weight · L_r`, with one forward over every sequence of the batch.

        The LM head runs only at answer positions (see `unlearn_peft.answer_tokens`); with `return_outputs=True` the
        outputs are those [`AnswerTokens`].
        """
        counts = num_items_in_batch if isinstance(num_items_in_batch, dict) else {}
        groups = ["forget"]
        if "forget_chosen_input_ids" in inputs:
            groups.append("forget_chosen")
        if "retain_input_ids" in inputs:
            groups.append("retain")
        answers = forward_answer_tokens(
            model,
            torch.cat([inputs[f"{group}_input_ids"] for group in groups]),
            torch.cat([inputs[f"{group}_attention_mask"] for group in groups]),
            torch.cat([inputs[f"{group}_labels"] for group in groups]),
            unwrapped_model=self.accelerator.unwrap_model(model),
        )
        sizes = [inputs[f"{group}_input_ids"].shape[0] for group in groups]
        by_group = dict(zip(groups, answers.split(sizes), strict=True))

        if self.unlearning_method.reference_groups and "forget_reference_log_prob" not in inputs:
            inputs = {**inputs, **self._reference_log_probs_now(inputs)}
        forget = self.unlearning_method.forget_term(by_group, inputs, counts, self.args)
        terms = {"forget": (forget.loss, counts.get(forget.count_name), forget.local_count)}
        loss = self.args.forget_loss_weight * forget.loss
        if "retain" in by_group:
            retain_term = self.unlearning_method.retain_term(
                by_group["retain"], lambda: self._reference_answers(model, inputs, "retain"), counts, self.args
            )
            terms["retain"] = (retain_term, counts.get("retain"), count_loss_tokens(inputs["retain_labels"]))
            loss = loss + self.args.retain_loss_weight * retain_term

        self._check_finite(terms)
        self._record_term_metrics(terms)
        if counts and self.args.average_tokens_across_devices and self.args.world_size > 1:
            # Counts were summed over processes, and DDP averages gradients: undo that average.
            loss = loss * self.accelerator.num_processes
        return (loss, answers) if return_outputs else loss

    def _reference_log_probs_now(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reference log-probs of this batch's forget sequences, with an extra forward (no precomputation)."""
        return {
            f"{group}_reference_log_prob": sequence_log_probs(self._reference_answers(self.model, inputs, group))[0]
            for group in self.unlearning_method.reference_groups
        }

    def _reference_answers(self, model: nn.Module, inputs: dict[str, torch.Tensor], group: str) -> AnswerTokens:
        """The reference model's answer tokens for one batch group: the same model with the adapter disabled."""
        reference = self.accelerator.unwrap_model(model)
        with torch.no_grad(), reference.disable_adapter():
            return forward_answer_tokens(
                reference, inputs[f"{group}_input_ids"], inputs[f"{group}_attention_mask"], inputs[f"{group}_labels"]
            )

    def _check_finite(self, terms: dict[str, tuple[torch.Tensor, Any, Any]]) -> None:
        """Stop training with a clear error when a loss term is NaN or infinite (the last checkpoint stays)."""
        values = torch.stack([value.detach().float() for value, _, _ in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        bad = ", ".join(f"loss_{name}={value.item()}" for name, value in zip(terms, values, strict=True))
        mode = "training" if self.model.training else "evaluation"
        raise FloatingPointError(
            f"Non-finite loss during {mode} at step {self.state.global_step + 1} ({bad}). Training stopped; the "
            "last saved checkpoint is unchanged. Lower learning_rate, check the rows of this batch, or use fp32."
        )

    def _record_term_metrics(self, terms: dict[str, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]) -> None:
        """Log each term as its local mean over this micro-batch, averaged over processes."""
        mode = "train" if self.model.training else "eval"
        values = {}
        for name, (value, global_count, local_count) in terms.items():
            local_mean = value.detach()
            if global_count is not None:
                local_mean = local_mean * global_count / local_count.clamp(min=1)
            values[name] = self.accelerator.gather(local_mean.float()).mean().item()
            self._metrics[mode][f"loss_{name}"].append(values[name])
        if mode == "train" and self.convergence is not None:
            self.convergence.update(values["forget"], values.get("retain"))

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[3] if len(args) > 3 else "eval")
        for key, values in self._metrics["eval"].items():
            if values:
                output.metrics[f"{prefix}_{key}"] = sum(values) / len(values)
        self._metrics["eval"].clear()
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {key: sum(values) / len(values) for key, values in self._metrics[mode].items() if values}
        if mode == "train":
            self.last_train_metrics.update(metrics)
        else:
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        super().log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()

    # ------------------------------------------------------------------ train / save

    def train(self, *args: Any, **kwargs: Any):
        output = super().train(*args, **kwargs)
        if self.convergence is not None:
            self._report_convergence()
        return output

    def _report_convergence(self) -> None:
        """Record whether the assistant converged within its step budget, and say so when it did not."""
        tracker, steps, budget = self.convergence, self.state.global_step, self.state.max_steps
        self.convergence_summary = tracker.summary(steps, budget)
        if tracker.converged:
            logger.info("ULD assistant converged in %d of at most %d steps (%s).", steps, budget, tracker.describe())
            return
        logger.warning(
            "The ULD assistant has NOT converged after %d of %d steps: %s. Unlearning will be weak and retained "
            "answers may change; raise the step budget (max_steps or min_train_steps) or the learning rate.",
            steps,
            budget,
            tracker.describe(),
        )

    def build_sidecar(self) -> UnlearnSidecar:
        """The `unlearn_config.json` describing this run's adapter."""
        name_or_path, revision = base_model_reference(self.target_model.config)
        args = self.args
        return UnlearnSidecar(
            method=args.method,
            base_model_name_or_path=name_or_path,
            base_model_revision=revision,
            base_model_fingerprint=base_model_fingerprint(self.target_model),
            library_version=__version__,
            assistant_num_layers=self.assistant_num_layers,
            **self.unlearning_method.sidecar_fields(args),
            training={
                **self.dataset_summary,
                "retain_loss": self.unlearning_method.retain_loss_name(args),
                "beta": args.beta,
                "forget_loss_weight": args.forget_loss_weight,
                "retain_loss_weight": args.retain_loss_weight,
                "learning_rate": args.learning_rate,
                "num_train_epochs": args.num_train_epochs,
                "epochs_run": round(self.state.epoch or 0.0, 2),
                "max_length": args.max_length,
                "global_step": self.state.global_step,
                "world_size": args.world_size,
                **self.convergence_summary,
            },
        )

    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        # Atomic: a failure while writing leaves the previous adapter in output_dir loadable.
        with staged_save(output_dir) as staging:
            super()._save(str(staging), state_dict=state_dict)
            # Trainer pickles the arguments; resuming never reads them back, and users get JSON instead.
            (staging / TRAINING_ARGS_PICKLE).unlink(missing_ok=True)
            (staging / TRAINING_ARGS_JSON).write_text(self.args.to_json_string(), encoding="utf-8")
            self.build_sidecar().save(staging)
            # PEFT's save_pretrained just wrote its generic README.md; the unlearning card replaces it.
            self.create_model_card(output_dir=str(staging))

    @property
    def hub_repo_id(self) -> str:
        """The repository `init_hf_repo` created, else `hub_model_id`, else the output directory's name."""
        return getattr(self, "hub_model_id", None) or self.args.hub_model_id or Path(self.args.output_dir).name

    def create_model_card(self, output_dir: str | None = None, **kwargs: Any) -> None:
        """Write the unlearning model card (`hub_cards/`) as `README.md`; replaces Trainer's and PEFT's cards."""
        if not self.is_world_process_zero():
            return
        directory = output_dir or self.args.output_dir
        render_model_card(directory, repo_id=self.hub_repo_id).save(os.path.join(directory, "README.md"))

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        *,
        evaluation: str | os.PathLike[str] | dict[str, Any] | None = None,
        base_model: str | None = None,
        datasets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Save the adapter to `output_dir` and upload it with its sidecar and model card to `hub_model_id`.

        Only the adapter files, the sidecar, the card and the optional evaluation are uploaded (see
        [`~unlearn_peft.hub.push_adapter`]); optimizer states and `training_args.json` stay local. Returns the commit
        URL on the main process, `None` elsewhere.
        """
        self.save_model(self.args.output_dir, _internal_call=True)
        if not self.is_world_process_zero():
            return None
        return push_adapter(
            self.args.output_dir,
            self.hub_repo_id,
            evaluation=evaluation,
            base_model=base_model,
            datasets=datasets,
            private=self.args.hub_private_repo,
            token=token or self.args.hub_token,
            revision=revision or self.args.hub_revision,
            commit_message=commit_message or "End of training",
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """With `push_to_hub=True`, checkpoints are pushed like the final adapter: files, sidecar and card."""
        if not self.is_world_process_zero() or self.args.hub_strategy == "end":
            return
        push_adapter(
            checkpoint_folder,
            self.hub_repo_id,
            private=self.args.hub_private_repo,
            token=self.args.hub_token,
            revision=self.args.hub_revision,
            commit_message=f"Training in progress, step {self.state.global_step}",
        )

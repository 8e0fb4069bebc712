"""`UnlearnTrainer`: a TRL-style trainer for LLM unlearning with LoRA / QLoRA adapters."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from datasets import Dataset
from peft import PeftConfig, PeftModel
from torch import nn
from transformers import (
    AutoTokenizer,
    DataCollator,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    Trainer,
    TrainerCallback,
)
from transformers.trainer_utils import set_seed

from .answer_tokens import AnswerTokens, forward_answer_tokens
from .config import UnlearnConfig
from .convergence import ConvergenceTracker, StopWhenConverged
from .data import GROUP_COLUMN_PREFIXES, ForgetRetainCollator, StepCounts, TokenBatch, UnlearningBatch
from .data.preparation import epochs_for_min_train_steps, prepare_eval_dataset, prepare_train_dataset
from .loading import load_causal_lm
from .losses import count_loss_tokens, sequence_log_probs
from .methods import get_method
from .publishing import AdapterPublishingMixin
from .reference import reference_sequence_log_probs

logger = logging.getLogger(__name__)


class UnlearnTrainer(AdapterPublishingMixin, Trainer):
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
        self._pad_token_id = tokenizer.pad_token_id
        self._non_embedding_parameters: int | None = None
        self.method = args.method
        self.unlearning_method = get_method(args.method)
        self.assistant_num_layers = self.unlearning_method.assistant_num_layers(model, args)
        train_dataset, self.dataset_summary = prepare_train_dataset(
            forget_dataset, retain_dataset, tokenizer, args, self.unlearning_method
        )
        # Names (never contents) of the datasets, for the sidecar and the model card.
        for key, name in (("forget_dataset", forget_dataset_name), ("retain_dataset", retain_dataset_name)):
            if name is not None:
                self.dataset_summary[key] = name
        prepared_eval = prepare_eval_dataset(eval_dataset, tokenizer, args)
        for paired in (train_dataset, prepared_eval):  # before wrapping: the target is still whole and unmoved
            if paired is not None and paired.retain is not None:
                paired.retain = self.unlearning_method.add_retain_columns(
                    paired.retain, model, tokenizer.pad_token_id, args
                )
        self.retain_columns = [] if train_dataset.retain is None else list(train_dataset.retain.column_names)
        self.target_reading = self.unlearning_method.read_target(
            model, train_dataset.forget, tokenizer.pad_token_id, args
        )

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
        epochs = epochs_for_min_train_steps(len(self.train_dataset), args)
        if epochs is not None:
            args.num_train_epochs = epochs
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

    # ------------------------------------------------------------------ loss

    def _cache_reference_log_probs(self) -> None:
        """Store `log π_ref(y|x)` of every forget example (and of its refusal, for idk_dpo) before training."""
        forget = self.train_dataset.forget
        for group in self.unlearning_method.reference_groups:
            prefix = GROUP_COLUMN_PREFIXES[group]
            values = reference_sequence_log_probs(
                self.model,
                forget,
                self._pad_token_id,
                input_ids_column=f"{prefix}input_ids",
                labels_column=f"{prefix}labels",
                batch_size=self.args.per_device_eval_batch_size,
                device=self.args.device,
                description=f"Reference log-probs ({group})",
                disable_progress=self.args.disable_tqdm,
            )
            forget = forget.add_column(f"{prefix}reference_log_prob", values)
        self.train_dataset.forget = forget

    def _prepare_inputs(self, inputs: UnlearningBatch) -> UnlearningBatch:
        return inputs.to(self.args.device)

    def _get_num_items_in_batch(self, batch_samples: list[UnlearningBatch], device: torch.device) -> StepCounts:
        """What the optimiser step's terms are means over, counted over all of its micro-batches and processes."""
        counts = StepCounts.of(batch_samples, device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = counts.summed(lambda count: self.accelerator.gather(count).sum())
        return counts

    def floating_point_ops(self, inputs: UnlearningBatch) -> int:
        """Trainer's estimate (6 · tokens · parameters without embeddings) over every group of the batch."""
        if not hasattr(self.model, "num_parameters"):
            return 0
        if self._non_embedding_parameters is None:  # counted once: the parameters do not change during training
            self._non_embedding_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs.num_tokens() * self._non_embedding_parameters

    def _track_num_input_tokens(self, inputs: UnlearningBatch) -> None:
        if self.args.include_num_input_tokens_seen == "no":
            return
        tokens = torch.as_tensor(inputs.num_tokens(), device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += self.accelerator.gather(tokens).sum().item()

    def compute_loss(
        self,
        model: nn.Module,
        inputs: UnlearningBatch,
        return_outputs: bool = False,
        num_items_in_batch: StepCounts | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """`forget_loss_weight · L_f + retain_loss_weight · L_r`, with one forward over every sequence of the batch.

        The LM head runs only at answer positions (see `unlearn_peft.answer_tokens`); with `return_outputs=True` the
        outputs are those [`AnswerTokens`].
        """
        counts = num_items_in_batch if isinstance(num_items_in_batch, StepCounts) else StepCounts()
        groups = inputs.groups()
        answers = forward_answer_tokens(
            model,
            torch.cat([group.input_ids for group in groups.values()]),
            torch.cat([group.attention_mask for group in groups.values()]),
            torch.cat([group.labels for group in groups.values()]),
            unwrapped_model=self.accelerator.unwrap_model(model),
        )
        by_group = dict(zip(groups, answers.split([len(group) for group in groups.values()]), strict=True))

        if self.unlearning_method.reference_groups and inputs.forget.reference_log_prob is None:
            inputs = self._with_reference_log_probs(inputs)
        forget = self.unlearning_method.forget_term(by_group, inputs, counts, self.args)
        terms = {"forget": (forget.loss, forget.global_count, forget.local_count)}
        loss = self.args.forget_loss_weight * forget.loss
        if inputs.retain is not None:
            retain_term = self.unlearning_method.retain_term(
                by_group["retain"], lambda: self._reference_answers(model, inputs.retain), counts, self.args
            )
            retain_tokens = count_loss_tokens(inputs.retain.labels)
            terms["retain"] = (retain_term, counts.retain_tokens, retain_tokens)
            loss = loss + self.args.retain_loss_weight * retain_term
            extra_terms = self.unlearning_method.extra_retain_terms(
                by_group["retain"], inputs.retain, counts, self.args
            )
            for name, (weight, value) in extra_terms.items():
                terms[name] = (value, counts.retain_tokens, retain_tokens)
                loss = loss + weight * value

        self._check_finite(terms)
        self._record_term_metrics(terms)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            # Counts were summed over processes, and DDP averages gradients: undo that average.
            loss = loss * self.accelerator.num_processes
        return (loss, answers) if return_outputs else loss

    def _with_reference_log_probs(self, batch: UnlearningBatch) -> UnlearningBatch:
        """The batch with its groups' reference log-probs, from an extra forward (no precomputation)."""
        groups = {}
        for name in self.unlearning_method.reference_groups:
            group = getattr(batch, name)
            log_probs = sequence_log_probs(self._reference_answers(self.model, group))[0]
            groups[name] = replace(group, reference_log_prob=log_probs)
        return replace(batch, **groups)

    def _reference_answers(self, model: nn.Module, group: TokenBatch) -> AnswerTokens:
        """The reference model's answer tokens for one batch group: the same model with the adapter disabled."""
        reference = self.accelerator.unwrap_model(model)
        with torch.no_grad(), reference.disable_adapter():
            return forward_answer_tokens(reference, group.input_ids, group.attention_mask, group.labels)

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
        inputs: UnlearningBatch,
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(
        self,
        dataloader: torch.utils.data.DataLoader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        for key, values in self._metrics["eval"].items():
            if values:
                output.metrics[f"{metric_key_prefix}_{key}"] = sum(values) / len(values)
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
            self.convergence_summary = self.convergence.report(self.state.global_step, self.state.max_steps)
        return output

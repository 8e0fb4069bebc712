"""`ULDModel`: a causal LM whose logits are the target's minus the ULD assistant's (filtered).

Load an adapter trained by [`UnlearnTrainer`] with one line and use it like any causal LM: `forward`,
`generate` (greedy, sampling, beam search, batched left-padded prompts), pipelines and lm-eval-harness.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, PeftModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .assistant import early_exit_view, find_decoder_layers, num_decoder_layers
from .cache import ULDCache
from .hub import ADAPTER_WEIGHTS_NAME, push_adapter, resolve_adapter_dir
from .logit_difference import check_subtraction_margin, uld_logits
from .quiet import announce_quantization_messages, peft_wrapping
from .saving import staged_save
from .sidecar import UnlearnSidecar, base_model_fingerprint
from .truncated import is_truncated


def check_fingerprint(recorded: dict[str, Any], base: PreTrainedModel, source: str) -> None:
    """Refuse a base model whose fingerprint differs from the one recorded in the adapter's sidecar, and a model
    loaded with only an assistant's layers (it describes its full checkpoint but is not the base)."""
    if is_truncated(base):
        raise ValueError(
            f"The given base holds only the first {num_decoder_layers(base.config)} decoder layers of its checkpoint "
            "(loaded that way for ULD training); it cannot serve as the base of an adapter. Load the full model."
        )
    actual = base_model_fingerprint(base)
    differences = {
        key: (recorded.get(key), actual.get(key)) for key in recorded if recorded.get(key) != actual.get(key)
    }
    if differences:
        listed = "; ".join(f"{key}: adapter {want!r} vs base {got!r}" for key, (want, got) in differences.items())
        raise ValueError(
            f"The adapter {source} was trained on a different base model ({listed}). Adapter fingerprint: "
            f"{recorded}; given base: {actual}. Load the base it was trained on (base_model=...)."
        )


def load_adapter_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read adapter weights from safetensors, refusing a corrupted or truncated file with a clear message."""
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} is corrupted or truncated ({error}); re-download the adapter or save it again."
        ) from error


# transformers renamed the cache keyword and output field from `past_key_values` to `cache`; support both.
_OUTPUT_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _cache_keyword(module: torch.nn.Module) -> str:
    """The keyword of `module.forward` for its KV cache: `cache` (newer transformers) or `past_key_values`."""
    return _cache_keyword_of_class(type(module))


@functools.cache
def _cache_keyword_of_class(module_class: type) -> str:
    # Looked up once per class: this runs for both stacks at every generated token.
    parameters = inspect.signature(module_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _is_quantized(model: PreTrainedModel) -> bool:
    return getattr(model, "hf_quantizer", None) is not None or bool(getattr(model, "is_loaded_in_4bit", False))


class ULDModel(PreTrainedModel, GenerationMixin):
    r"""The unlearned model of ULD (Ji et al. 2024, arXiv 2406.08607): logits `z_T − α · f(z_A)`.

    `z_T` are the target (base) model's logits, `z_A` the assistant's (the base's first K layers with the unlearning
    LoRA), and `f` keeps the assistant's log-probabilities centred over the tokens the target finds plausible, zero
    elsewhere (see [`~unlearn_peft.logit_difference`]). Both stacks keep their own KV cache ([`ULDCache`]).

    Build it with [`ULDModel.from_pretrained`].
    """

    config_class = PretrainedConfig
    base_model_prefix = "target"
    main_input_name = "input_ids"
    # Attention runs inside the two wrapped stacks; these flags only let PreTrainedModel accept their settings.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(
        self,
        target: PreTrainedModel,
        assistant: PreTrainedModel,
        sidecar: UnlearnSidecar,
        adapter_config: PeftConfig,
        adapter_state: dict[str, torch.Tensor],
        assistant_weight: float,
        plausibility_threshold: float,
        merged: bool,
        min_tokens_to_keep: int = 1,
        weight_by_assistant_mass: bool = False,
        one_sided_subtraction: bool = False,
        subtraction_margin: float = 0.0,
        exempt_token_ids: Sequence[int] = (),
    ) -> None:
        # A copy: PreTrainedModel.__init__ may adjust attention settings, which must not reach the target.
        super().__init__(copy.deepcopy(target.config))
        self.target = target
        self.assistant = assistant
        self.sidecar = sidecar
        self.adapter_config = adapter_config
        self.adapter_state = adapter_state
        self.assistant_weight = float(assistant_weight)
        self.plausibility_threshold = float(plausibility_threshold)
        self.min_tokens_to_keep = int(min_tokens_to_keep)
        self.weight_by_assistant_mass = bool(weight_by_assistant_mass)
        self.one_sided_subtraction = bool(one_sided_subtraction)
        self.subtraction_margin = float(subtraction_margin)
        check_subtraction_margin(self.subtraction_margin, self.one_sided_subtraction)
        self.exempt_token_ids = [int(token_id) for token_id in exempt_token_ids]
        text_config = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        vocab_size = text_config.vocab_size
        outside = [token_id for token_id in self.exempt_token_ids if not 0 <= token_id < vocab_size]
        if outside:
            raise ValueError(
                f"exempt_token_ids {outside} are outside the target's vocabulary (0 to {vocab_size - 1}); pass ids of "
                "its tokenizer, e.g. tokenizer.all_special_ids, or [] to subtract on every token."
            )
        self.merged = merged
        self.plain_assistant_head = self._assistant_head_is_plain()
        self.generation_config = copy.deepcopy(target.generation_config)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        adapter_path_or_repo_id: str | os.PathLike[str],
        base_model: str | PreTrainedModel | None = None,
        *,
        assistant_weight: float | None = None,
        plausibility_threshold: float | None = None,
        min_tokens_to_keep: int | None = None,
        weight_by_assistant_mass: bool | None = None,
        one_sided_subtraction: bool | None = None,
        subtraction_margin: float | None = None,
        exempt_token_ids: Sequence[int] | None = None,
        merge_assistant: bool = True,
        revision: str | None = None,
        token: str | None = None,
        **base_model_kwargs: Any,
    ) -> ULDModel:
        """Load a ULD adapter (local directory or Hub repo) onto its base model.

        Args:
            adapter_path_or_repo_id (`str` or `os.PathLike`):
                Directory written by `UnlearnTrainer.save_model` / `ULDModel.save_pretrained`, or a Hub repo id.
            base_model (`str` or [`~transformers.PreTrainedModel`], *optional*):
                The base to unlearn from. Defaults to the id (and revision) recorded in the sidecar. It must match
                the sidecar's fingerprint.
            assistant_weight (`float`, *optional*):
                Overrides the sidecar's α.
            plausibility_threshold (`float`, *optional*):
                Overrides the sidecar's τ (`0` disables the filter).
            min_tokens_to_keep (`int`, *optional*):
                Overrides the sidecar's floor `m`: the filter always keeps the target's `m` most probable tokens.
            weight_by_assistant_mass (`bool`, *optional*):
                Overrides the sidecar's choice to scale the assistant's filtered logits by its probability mass on the
                plausible tokens (see `unlearn_peft.logit_difference`).
            one_sided_subtraction (`bool`, *optional*):
                Overrides the sidecar's choice to clip the assistant's centred log-probabilities at zero, so it only
                lowers tokens (see `unlearn_peft.logit_difference`).
            subtraction_margin (`float`, *optional*):
                Overrides the sidecar's margin δ of the one-sided subtraction, `max(0, f(z_A) − δ)` (needs
                `one_sided_subtraction`).
            exempt_token_ids (`Sequence[int]`, *optional*):
                Overrides the sidecar's tokens on which the assistant is never subtracted (the trainer records the
                tokenizer's special tokens when they are exempt: by default for a target that has not memorised its
                forget rows; else none; `[]` subtracts on every token).
            merge_assistant (`bool`, defaults to `True`):
                `True`: copy the K assistant layers and merge the LoRA into the copy, so inference runs two plain
                stacks (embeddings and LM head stay shared). `False`: share every base tensor and run the LoRA in
                the assistant pass only — the mode for 4-bit bases and tight memory.
            revision (`str`, *optional*):
                Revision of the adapter repository.
            token (`str`, *optional*):
                Hub token for private repositories.
            base_model_kwargs:
                Passed to `AutoModelForCausalLM.from_pretrained` when the base is loaded here (e.g. `dtype`,
                `quantization_config`, `device_map`). Weights load from safetensors only.
        """
        directory = resolve_adapter_dir(adapter_path_or_repo_id, revision=revision, token=token)
        sidecar = UnlearnSidecar.load(directory)
        if sidecar.method != "uld":
            raise ValueError(
                f"{adapter_path_or_repo_id} was trained with method={sidecar.method!r}; ULDModel loads ULD adapters. "
                "Load baseline adapters with peft.AutoPeftModelForCausalLM.from_pretrained."
            )
        if base_model_kwargs.pop("trust_remote_code", False):
            raise ValueError("unlearn-peft never runs remote code: remove trust_remote_code.")
        if base_model is None:
            if not sidecar.base_model_name_or_path:
                raise ValueError(f"{adapter_path_or_repo_id} records no base model id; pass base_model=<id or model>.")
            base_model = sidecar.base_model_name_or_path
            if sidecar.base_model_revision and "revision" not in base_model_kwargs:
                base_model_kwargs["revision"] = sidecar.base_model_revision
        if isinstance(base_model, (str, os.PathLike)):
            if base_model_kwargs.get("quantization_config") is not None:
                announce_quantization_messages()
            base_model = AutoModelForCausalLM.from_pretrained(
                str(base_model), use_safetensors=True, **base_model_kwargs
            )
        check_fingerprint(sidecar.base_model_fingerprint, base_model, str(adapter_path_or_repo_id))

        if merge_assistant and _is_quantized(base_model):
            raise ValueError(
                "merge_assistant=True needs an unquantized base (LoRA cannot be merged into 4-bit weights); load "
                "with merge_assistant=False."
            )
        num_layers = sidecar.assistant_num_layers
        view = early_exit_view(base_model, num_layers)
        if merge_assistant:
            parent, attribute = find_decoder_layers(view)
            setattr(parent, attribute, copy.deepcopy(getattr(parent, attribute)))
        adapter_config = PeftConfig.from_pretrained(str(directory))
        adapter_state = load_adapter_weights(directory / ADAPTER_WEIGHTS_NAME)
        with peft_wrapping():
            peft_model = PeftModel.from_pretrained(view, str(directory), is_trainable=False)
        assistant = peft_model.merge_and_unload() if merge_assistant else peft_model.base_model.model
        model = cls(
            target=base_model,
            assistant=assistant,
            sidecar=sidecar,
            adapter_config=adapter_config,
            adapter_state=adapter_state,
            assistant_weight=sidecar.assistant_weight if assistant_weight is None else assistant_weight,
            plausibility_threshold=(
                sidecar.plausibility_threshold if plausibility_threshold is None else plausibility_threshold
            ),
            merged=merge_assistant,
            min_tokens_to_keep=sidecar.min_tokens_to_keep if min_tokens_to_keep is None else min_tokens_to_keep,
            weight_by_assistant_mass=(
                sidecar.weight_by_assistant_mass if weight_by_assistant_mass is None else weight_by_assistant_mass
            ),
            one_sided_subtraction=(
                sidecar.one_sided_subtraction if one_sided_subtraction is None else one_sided_subtraction
            ),
            subtraction_margin=sidecar.subtraction_margin if subtraction_margin is None else subtraction_margin,
            exempt_token_ids=sidecar.exempt_token_ids if exempt_token_ids is None else exempt_token_ids,
        )
        return model.eval()

    # ------------------------------------------------------------------ forward

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.target.get_input_embeddings()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.target.get_output_embeddings()

    def _as_uld_cache(self, cache: Any) -> ULDCache:
        if isinstance(cache, ULDCache):
            return cache
        if cache is None or cache.get_seq_length() == 0:
            # generate() builds an empty cache for the target only; both stacks need theirs.
            return ULDCache(config=self.target.config, assistant_config=self.assistant.config)
        raise ValueError(
            "ULDModel keeps one KV cache per stack: pass cache=None or the ULDCache returned by a previous call, "
            f"not a filled {type(cache).__name__}."
        )

    @torch.no_grad()
    def _assistant_head_is_plain(self) -> bool:
        """Whether the assistant's logits are exactly `lm_head(decoder(...))`, checked on a two-token probe.

        Then the head can run on the plausible tokens only. Models that post-process their logits (Gemma-2's
        soft-capping, Granite's scaling, ...) fail the check and run the assistant's own full forward instead.
        """
        probe = torch.zeros(1, 2, dtype=torch.long, device=self.get_input_embeddings().weight.device)
        logits = self.assistant(input_ids=probe, use_cache=False).logits.float()
        hidden = self.assistant.get_decoder()(input_ids=probe, use_cache=False).last_hidden_state
        head_logits = self.assistant.get_output_embeddings()(hidden).float()
        return head_logits.shape == logits.shape and torch.allclose(head_logits, logits, rtol=1e-4, atol=1e-4)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: ULDCache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: ULDCache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Run both stacks and return `logits = target − α · filtered(assistant)` (see the class docstring).

        The KV cache comes as `cache` (transformers ≥ 5.x's name) or `past_key_values` (the older name); either way
        the same [`ULDCache`] carries both stacks' caches, and each stack receives it under the name it accepts.
        """
        if cache is not None and past_key_values is not None and cache is not past_key_values:
            raise ValueError("ULDModel.forward got two different caches: pass either cache= or past_key_values=.")
        cache = cache if cache is not None else past_key_values
        use_cache = use_cache if use_cache is not None else cache is not None
        uld_cache = self._as_uld_cache(cache) if use_cache else None
        stack_inputs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        # Older transformers pass cache_position; both stacks need the same one.
        shared_kwargs = {key: kwargs[key] for key in ("cache_position",) if kwargs.get(key) is not None}
        target_outputs = self.target(
            **stack_inputs, **{_cache_keyword(self.target): uld_cache}, logits_to_keep=logits_to_keep, **kwargs
        )
        logits = target_outputs.logits
        if self.assistant_weight != 0:
            assistant_cache = uld_cache.assistant_cache if uld_cache is not None else None
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            if self.plain_assistant_head:
                decoder = self.assistant.get_decoder()
                hidden = decoder(
                    **stack_inputs, **{_cache_keyword(decoder): assistant_cache}, **shared_kwargs
                ).last_hidden_state
                assistant, lm_head = hidden[:, keep, :], self.assistant.get_output_embeddings()
            else:
                assistant_outputs = self.assistant(
                    **stack_inputs,
                    **{_cache_keyword(self.assistant): assistant_cache},
                    logits_to_keep=logits_to_keep,
                    **shared_kwargs,
                )
                assistant, lm_head = assistant_outputs.logits, None
            logits = uld_logits(
                logits,
                assistant,
                self.assistant_weight,
                self.plausibility_threshold,
                self.min_tokens_to_keep,
                lm_head=lm_head,
                weight_by_assistant_mass=self.weight_by_assistant_mass,
                one_sided_subtraction=self.one_sided_subtraction,
                subtraction_margin=self.subtraction_margin,
                exempt_token_ids=self.exempt_token_ids,
            )
        loss = None
        if labels is not None:
            loss = self.target.loss_function(logits=logits, labels=labels, vocab_size=logits.shape[-1], **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_OUTPUT_CACHE_FIELD: uld_cache})

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the adapter (PEFT files) and the sidecar with the current α, τ and floor; never merged weights."""
        sidecar = copy.deepcopy(self.sidecar)
        sidecar.assistant_weight = self.assistant_weight
        sidecar.plausibility_threshold = self.plausibility_threshold
        sidecar.min_tokens_to_keep = self.min_tokens_to_keep
        sidecar.weight_by_assistant_mass = self.weight_by_assistant_mass
        sidecar.one_sided_subtraction = self.one_sided_subtraction
        sidecar.subtraction_margin = self.subtraction_margin
        sidecar.exempt_token_ids = list(self.exempt_token_ids)
        # Atomic: a failure while writing leaves a previous adapter in save_directory loadable.
        with staged_save(save_directory) as staging:
            self.adapter_config.save_pretrained(str(staging))
            save_file(self.adapter_state, str(staging / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
            sidecar.save(staging)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        evaluation: str | os.PathLike[str] | dict[str, Any] | None = None,
        base_model: str | None = None,
        token: str | None = None,
        private: bool | None = None,
        commit_message: str = "Upload ULD adapter with unlearn-peft",
        revision: str | None = None,
    ) -> str:
        """Upload the adapter, the sidecar (current α and τ) and its model card to `repo_id` (created if needed).

        See [`~unlearn_peft.hub.push_adapter`] for the arguments; returns the commit URL. Load it back with
        `ULDModel.from_pretrained(repo_id)`.
        """
        with tempfile.TemporaryDirectory() as staging:
            self.save_pretrained(staging)
            return push_adapter(
                staging,
                repo_id,
                evaluation=evaluation,
                base_model=base_model,
                private=private,
                token=token,
                revision=revision,
                commit_message=commit_message,
            )


# Pipelines compare the model's class with the Auto mappings and log "The model 'ULDModel' is not supported for
# text-generation" (followed by every supported class) for classes they do not know. Registering ULDModel under the
# base config class, which no checkpoint's config is, makes it known without changing how any model loads.
AutoModelForCausalLM.register(PretrainedConfig, ULDModel, exist_ok=True)

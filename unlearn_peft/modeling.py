"""`ULDModel`: a causal LM whose logits are the target's minus the ULD assistant's (filtered).

Load an adapter trained by [`UnlearnTrainer`] with one line and use it like any causal LM: `forward`,
`generate` (greedy, sampling, beam search, batched left-padded prompts), pipelines and lm-eval-harness.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, PeftModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .assistant import early_exit_view, find_decoder_layers
from .cache import ULDCache
from .hub import ADAPTER_WEIGHTS_NAME, resolve_adapter_dir
from .logit_difference import filtered_assistant_logits_from_hidden
from .saving import staged_save
from .sidecar import UnlearnSidecar, base_model_fingerprint


def check_fingerprint(recorded: dict[str, Any], base: PreTrainedModel, source: str) -> None:
    """Refuse a base model whose fingerprint differs from the one recorded in the adapter's sidecar."""
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
        self.merged = merged
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
        )
        return model.eval()

    # ------------------------------------------------------------------ forward

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.target.get_input_embeddings()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.target.get_output_embeddings()

    def _as_uld_cache(self, past_key_values: Any) -> ULDCache:
        if isinstance(past_key_values, ULDCache):
            return past_key_values
        if past_key_values is None or past_key_values.get_seq_length() == 0:
            return ULDCache(config=self.target.config, assistant_config=self.assistant.config)
        raise ValueError(
            "ULDModel keeps one KV cache per stack: pass past_key_values=None or the ULDCache returned by a previous "
            f"call, not a filled {type(past_key_values).__name__}."
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: ULDCache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        cache_position: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Run both stacks and return `logits = target − α · filtered(assistant)` (see the class docstring)."""
        use_cache = use_cache if use_cache is not None else past_key_values is not None
        cache = self._as_uld_cache(past_key_values) if use_cache else None
        stack_inputs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            cache_position=cache_position,
        )
        target_outputs = self.target(**stack_inputs, past_key_values=cache, logits_to_keep=logits_to_keep, **kwargs)
        logits = target_outputs.logits
        if self.assistant_weight != 0:
            decoder = self.assistant.get_decoder()
            hidden = decoder(
                **stack_inputs, past_key_values=cache.assistant_cache if cache is not None else None
            ).last_hidden_state
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            filtered = filtered_assistant_logits_from_hidden(
                logits, hidden[:, keep, :], self.assistant.get_output_embeddings(), self.plausibility_threshold
            )
            logits = (logits.float() - self.assistant_weight * filtered).to(logits.dtype)
        loss = None
        if labels is not None:
            loss = self.target.loss_function(logits=logits, labels=labels, vocab_size=logits.shape[-1], **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=cache)

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the adapter (PEFT files) and the sidecar with the current α and τ; never merged weights."""
        sidecar = copy.deepcopy(self.sidecar)
        sidecar.assistant_weight = self.assistant_weight
        sidecar.plausibility_threshold = self.plausibility_threshold
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
        from .hub import push_adapter

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

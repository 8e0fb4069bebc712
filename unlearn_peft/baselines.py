"""Compatibility shim: the baselines' LoRA is `unlearn_peft.methods.base`, their reference `unlearn_peft.reference`."""

from .methods.base import default_baseline_lora_config
from .reference import reference_sequence_log_probs

__all__ = ["default_baseline_lora_config", "reference_sequence_log_probs"]

"""What a user's console shows (issue #18): no dependency noise at start, nothing lost that matters."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import pytest

from unlearn_peft import ULDModel, UnlearnTrainer, quiet

from .conftest import qa_only, tiny_uld_args


def test_the_held_back_message_is_the_one_bitsandbytes_logs():
    """If bitsandbytes rewords or moves its CPU-kernel message, this fails and `quiet.py` must follow."""
    cpu_ops = pytest.importorskip("bitsandbytes.backends.cpu.ops")
    assert cpu_ops.logger.name == quiet.BITSANDBYTES_CPU_LOGGER
    assert quiet.BITSANDBYTES_KERNEL_MESSAGE in inspect.getsource(cpu_ops)


def test_the_bitsandbytes_kernel_message_waits_for_a_4bit_load():
    """A fresh interpreter: the message bitsandbytes logs at import is not printed until quantization is asked."""
    script = f"""
import logging, sys
import unlearn_peft
from unlearn_peft.quiet import announce_quantization_messages
logging.getLogger({quiet.BITSANDBYTES_CPU_LOGGER!r}).warning({quiet.BITSANDBYTES_KERNEL_MESSAGE!r} + ": no kernels")
logging.getLogger({quiet.BITSANDBYTES_CPU_LOGGER!r}).warning("another bitsandbytes warning")
print("-- 4-bit requested --", file=sys.stderr, flush=True)
announce_quantization_messages()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = result.stderr.split("-- 4-bit requested --")
    assert "another bitsandbytes warning" in before  # only the one known message is held
    assert quiet.BITSANDBYTES_KERNEL_MESSAGE not in before
    assert f"{quiet.BITSANDBYTES_KERNEL_MESSAGE}: no kernels" in after


def test_cli_help_prints_nothing_to_stderr():
    result = subprocess.run(
        [sys.executable, "-m", "unlearn_peft.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert result.stderr == ""
    assert "unlearn-peft" in result.stdout


def test_training_and_loading_raise_no_deprecation_warnings(
    make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    """Our own calls use current APIs; PEFT's use of a deprecated transformers property is silenced at our call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = UnlearnTrainer(
            make_tiny_llama(),
            args=tiny_uld_args(tmp_path / "adapter", max_steps=2),
            forget_dataset=qa_only(tofu_forget[:4]),
            retain_dataset=qa_only(tofu_retain[:4]),
            processing_class=tokenizer,
        )
        trainer.train()
        trainer.save_model()
        ULDModel.from_pretrained(tmp_path / "adapter", base_model=make_tiny_llama())
    deprecations = [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if issubclass(w.category, (FutureWarning, DeprecationWarning))
    ]
    assert deprecations == []

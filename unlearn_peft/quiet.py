"""Messages from dependencies that a user cannot act on, held back where they arise.

Each one is named with its upstream cause, so it can go when the dependency changes:

- bitsandbytes (0.50) logs "Failed to load CPU gemm_4bit_forward from kernels-community" when it is imported on a
  CPU with AVX512-BF16 and without the optional `kernels` package. `import peft` imports bitsandbytes whenever it
  is installed (`peft/helpers.py`), so the message opened every command, quantized or not. It is held back at
  import and shown when 4-bit loading is asked for ([`announce_quantization_messages`]), where it matters.
- PEFT (0.21) reads `model.is_gradient_checkpointing` while wrapping a model, which transformers (5.2x) deprecated
  with a `FutureWarning`; the call is PEFT's, so it is silenced only around our PEFT wrapping calls.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BITSANDBYTES_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
GRADIENT_CHECKPOINTING_DEPRECATION = r"`is_gradient_checkpointing` is deprecated"


class HeldBackRecords(logging.Filter):
    """Keeps the log records whose message starts with `prefix` instead of emitting them, until `release`."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(self.prefix):
            self.records.append(record)
            return False
        return True

    def release(self, logger: logging.Logger) -> None:
        """Emit the held records through `logger` (once) and stop holding new ones."""
        logger.removeFilter(self)
        records, self.records = self.records, []
        for record in records:
            logger.handle(record)


_bitsandbytes_kernel_message = HeldBackRecords(BITSANDBYTES_KERNEL_MESSAGE)


def hold_back_import_messages() -> None:
    """Install the filters; called by `unlearn_peft/__init__.py` before PEFT (and so bitsandbytes) is imported."""
    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)
    if _bitsandbytes_kernel_message not in logger.filters:
        logger.addFilter(_bitsandbytes_kernel_message)


def announce_quantization_messages() -> None:
    """Show what bitsandbytes said at import about its CPU kernels: called when 4-bit loading is asked for."""
    _bitsandbytes_kernel_message.release(logging.getLogger(BITSANDBYTES_CPU_LOGGER))


@contextmanager
def peft_wrapping() -> Iterator[None]:
    """Around `get_peft_model` / `PeftModel.from_pretrained`: drop PEFT's use of a deprecated transformers API."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=GRADIENT_CHECKPOINTING_DEPRECATION, category=FutureWarning)
        yield

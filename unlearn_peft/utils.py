"""Small helpers shared across modules: torch dtypes by name, and running a model in eval mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def torch_dtype(name: str | torch.dtype, argument: str) -> torch.dtype:
    """`"bfloat16"` → `torch.bfloat16` (a dtype passes through); an unknown name raises naming `argument`."""
    if isinstance(name, torch.dtype):
        return name
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{argument}={name!r} is not a torch dtype; use e.g. 'float32', 'bfloat16' or 'float16'.")
    return dtype


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (no dropout) and give it back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

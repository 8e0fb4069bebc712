"""The ULD logit difference: one definition, used by training-time evaluation, `forward` and generation.

The unlearned model's next-token logits are

$$z = z_T - \\alpha \\cdot f(z_A), \\qquad
f(z_A)_v = \\begin{cases} \\log p_A(v) - \\frac{1}{|S|}\\sum_{u \\in S} \\log p_A(u) & v \\in S \\\\ 0 & v \\notin S
\\end{cases}, \\qquad S = \\{v : p_T(v) \\ge \\tau \\cdot \\max_u p_T(u)\\}$$

with target logits `z_T`, assistant logits `z_A`, assistant weight `α` and plausibility threshold `τ`
(Ji et al. 2024, arXiv 2406.08607, Eq. 2–3). Centring the assistant's log-probabilities over the plausible set `S`
makes `f` invariant to any per-position shift of `z_A` (softmax shifts, log-sum-exp), so tokens outside `S` and
inside `S` stay comparable. Zero-filling the *raw* assistant logits outside `S`, as the reference code does, depends
on that arbitrary shift and breaks the model. With `τ = 0` every token is plausible and `f(z_A)` is the assistant's
log-probabilities centred over the whole vocabulary, which equals `z_A` up to a per-position constant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def plausible_token_mask(target_logits: torch.Tensor, plausibility_threshold: float) -> torch.Tensor:
    """Tokens whose target probability is at least `plausibility_threshold` × the top target probability."""
    if plausibility_threshold <= 0:
        return torch.ones_like(target_logits, dtype=torch.bool)
    target = target_logits.float()
    cutoff = target.max(dim=-1, keepdim=True).values + math.log(plausibility_threshold)
    return target >= cutoff


def filtered_assistant_logits(
    target_logits: torch.Tensor, assistant_logits: torch.Tensor, plausibility_threshold: float
) -> torch.Tensor:
    """`f(z_A)`: the assistant's log-probabilities centred over the plausible set, zero outside it."""
    mask = plausible_token_mask(target_logits, plausibility_threshold)
    assistant = assistant_logits.float()
    masked_sum = (assistant * mask).sum(dim=-1, keepdim=True)
    centred = assistant - masked_sum / mask.sum(dim=-1, keepdim=True)
    return torch.where(mask, centred, torch.zeros_like(centred))


def filtered_assistant_logits_from_hidden(
    target_logits: torch.Tensor,
    assistant_hidden: torch.Tensor,
    lm_head: nn.Module,
    plausibility_threshold: float,
    max_plausible_fraction: float = 0.25,
) -> torch.Tensor:
    """`f(z_A)` from the assistant's final hidden states, computing its LM head only on plausible tokens.

    Centring over the plausible set cancels the log-sum-exp, so `f` needs the assistant's logits only on tokens some
    position finds plausible: the head runs on those rows of its weight alone, which saves most of its cost during
    generation (one position, a handful of plausible tokens). It falls back to the full head when the filter is off,
    when the plausible tokens exceed `max_plausible_fraction` of the vocabulary, or when the head is not a plain
    linear layer. Both paths give the same values.
    """
    vocab_size = target_logits.shape[-1]
    weight = getattr(lm_head, "weight", None)
    if plausibility_threshold <= 0 or not isinstance(lm_head, nn.Linear) or weight is None or weight.ndim != 2:
        return filtered_assistant_logits(target_logits, lm_head(assistant_hidden), plausibility_threshold)
    mask = plausible_token_mask(target_logits, plausibility_threshold)
    tokens = mask.reshape(-1, vocab_size).any(dim=0).nonzero().squeeze(-1)
    if tokens.numel() > max_plausible_fraction * vocab_size:
        return filtered_assistant_logits(target_logits, lm_head(assistant_hidden), plausibility_threshold)
    bias = lm_head.bias[tokens] if lm_head.bias is not None else None
    partial_logits = F.linear(assistant_hidden, weight[tokens], bias).float()
    partial_mask = mask[..., tokens]
    centre = (partial_logits * partial_mask).sum(dim=-1, keepdim=True) / partial_mask.sum(dim=-1, keepdim=True)
    filtered = torch.zeros(target_logits.shape, dtype=torch.float32, device=target_logits.device)
    filtered[..., tokens] = torch.where(partial_mask, partial_logits - centre, torch.zeros_like(partial_logits))
    return filtered


def uld_logits(
    target_logits: torch.Tensor,
    assistant_logits: torch.Tensor,
    assistant_weight: float,
    plausibility_threshold: float,
) -> torch.Tensor:
    """The unlearned model's logits `z_T − α · f(z_A)` (see the module docstring), in the target's dtype."""
    if assistant_weight == 0:
        return target_logits
    filtered = filtered_assistant_logits(target_logits, assistant_logits, plausibility_threshold)
    return (target_logits.float() - assistant_weight * filtered).to(target_logits.dtype)

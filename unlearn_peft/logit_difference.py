"""The ULD logit difference: one definition, used by training-time evaluation, `forward` and generation.

The unlearned model's next-token logits are

$$z = z_T - \\alpha \\cdot f(z_A), \\qquad
f(z_A)_v = \\begin{cases} \\log p_A(v) - \\frac{1}{|S|}\\sum_{u \\in S} \\log p_A(u) & v \\in S \\\\ 0 & v \\notin S
\\end{cases}, \\qquad S = \\{v : p_T(v) \\ge \\tau \\cdot \\max_u p_T(u)\\} \\cup \\operatorname{top}_m(p_T)$$

with target logits `z_T`, assistant logits `z_A`, assistant weight `α`, plausibility threshold `τ` and floor `m`
(`min_tokens_to_keep`) (Ji et al. 2024, arXiv 2406.08607, Eq. 2–3). The floor matters exactly where unlearning
matters: a target that has memorised an answer puts p ≈ 1 on one token, the threshold alone then keeps `|S| = 1`,
and a one-token set makes `f ≡ 0` (nothing to subtract). Keeping the target's top `m` tokens lets the assistant
push the memorised token below its runners-up; the reference code likewise keeps at least `⌊τ·V⌋` tokens.

Centring the assistant's log-probabilities over the plausible set `S`
makes `f` invariant to any per-position shift of `z_A` (softmax shifts, log-sum-exp), so tokens outside `S` and
inside `S` stay comparable. Zero-filling the *raw* assistant logits outside `S`, as the reference code does, depends
on that arbitrary shift and breaks the model. With `τ = 0` every token is plausible and `f(z_A)` is the assistant's
log-probabilities centred over the whole vocabulary, which equals `z_A` up to a per-position constant.

Centring also makes `f` blind to how much the assistant believes in the plausible tokens: an assistant trained flat
on retain data puts almost no probability on them (≈ 0.000 on the demo's retain answers, 0.998 on its forget
answers, `benchmarks/RESULTS.md`), yet the log-probability differences among them (up to 4.7 nats there) pass
through `f` unchanged and flip the target's answer at some positions. With `weight_by_assistant_mass`, `f` is scaled
at each position by the assistant's probability mass on the plausible set, `P_A(S) = \\sum_{v \\in S} p_A(v)`: about
1 where the assistant remembers a plausible answer (the forget set), about 0 where it is flat. This is an addition of
this library, not part of the paper's method, and off by default: it also stops subtracting where the target phrases a
forgotten fact in words the assistant never saw, so on a target that had not memorised the forget answers some facts
came back in rephrased greedy answers (`benchmarks/RESULTS.md`).

With `one_sided_subtraction`, `f` is clipped at zero: `max(0, f(z_A))`. The assistant then only lowers the plausible
tokens it prefers over their average, above all the answer it remembers, and never raises the ones it rejects; the
target alone orders those. Unclipped, the tokens the assistant finds least likely gain the most, so on a memorised
target, whose runners-up lie far below its answer, the assistant's noise among them picks the next token: answers
with words run together or one word repeated. This too is an addition of this library, off by default; measured in
`benchmarks/RESULTS.md`.

With a `subtraction_margin` δ as well, `f = max(0, f(z_A) − δ)`: the assistant lowers a token only by how much it
prefers it beyond δ nats over the plausible set's average. Measured on two small targets, the assistant prefers the
answer it remembers by at least 7.5 nats at every forget answer token and any retain or held-out answer token by at
most 3.4 (but one end-of-turn token): a margin of a few nats keeps the lever that forgets and drops the noise that
changes retained answers (`benchmarks/RESULTS.md`). Also an addition of this library, off by default (δ = 0).

With `exempt_token_ids` (`exempt_special_tokens`: the tokenizer's special tokens, end of turn and end of text), `f`
is zero on those tokens: the target's logits stand there. They carry no fact to forget, but the assistant learns the
forget answers' *form* with their content, above all where they end, and subtracting it on the end-of-turn token
moves where the target ends answers it should keep: on the demo it cut one held-out answer's probability to 0.095×
(`benchmarks/RESULTS.md`). Also an addition of this library, off by default: on TOFU in small it lowered forget
quality, whose truth ratios score the end of turn too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The floor m of the plausible set (UnlearnConfig.min_tokens_to_keep); benchmarks/RESULTS.md shows how it was chosen.
DEFAULT_MIN_TOKENS_TO_KEEP = 10


def check_subtraction_margin(subtraction_margin: float, one_sided_subtraction: bool) -> None:
    """Refuse a negative margin, or one without the one-sided subtraction it lowers."""
    if subtraction_margin < 0 or (subtraction_margin > 0 and not one_sided_subtraction):
        raise ValueError(
            f"subtraction_margin={subtraction_margin} must be ≥ 0 and needs one_sided_subtraction=True (the margin "
            "lowers the clipped f); pass one_sided_subtraction=True, or subtraction_margin=0."
        )


def plausible_token_mask(
    target_logits: torch.Tensor, plausibility_threshold: float, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """Tokens whose target probability is at least `plausibility_threshold` × the top target probability, and
    always the target's `min_tokens_to_keep` most probable tokens."""
    if plausibility_threshold <= 0:
        return torch.ones_like(target_logits, dtype=torch.bool)
    target = target_logits.float()
    keep = min(max(int(min_tokens_to_keep), 1), target.shape[-1])
    # The m-th largest logit: lowering the cutoff to it keeps the top m (ties at the m-th value are kept too).
    top_values = target.topk(keep, dim=-1).values
    cutoff = torch.minimum(top_values[..., :1] + math.log(plausibility_threshold), top_values[..., -1:])
    return target >= cutoff


def filtered_assistant_logits(
    target_logits: torch.Tensor,
    assistant_logits: torch.Tensor,
    plausibility_threshold: float,
    min_tokens_to_keep: int = 1,
    one_sided: bool = False,
    margin: float = 0.0,
) -> torch.Tensor:
    """`f(z_A)`: the assistant's log-probabilities centred over the plausible set, zero outside it (and, with
    `one_sided`, lowered by `margin` and clipped at zero)."""
    mask = plausible_token_mask(target_logits, plausibility_threshold, min_tokens_to_keep)
    return _centred_on(assistant_logits, mask, one_sided, margin)


def _centred_on(
    assistant_logits: torch.Tensor, mask: torch.Tensor, one_sided: bool = False, margin: float = 0.0
) -> torch.Tensor:
    assistant = assistant_logits.float()
    masked_sum = (assistant * mask).sum(dim=-1, keepdim=True)
    centred = assistant - masked_sum / mask.sum(dim=-1, keepdim=True)
    if one_sided:
        centred = (centred - margin).clamp(min=0)
    return torch.where(mask, centred, torch.zeros_like(centred))


def filtered_assistant_logits_from_hidden(
    target_logits: torch.Tensor,
    assistant_hidden: torch.Tensor,
    lm_head: nn.Module,
    plausibility_threshold: float,
    min_tokens_to_keep: int = 1,
    max_plausible_fraction: float = 0.25,
    one_sided: bool = False,
    margin: float = 0.0,
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
        return filtered_assistant_logits(
            target_logits, lm_head(assistant_hidden), plausibility_threshold, min_tokens_to_keep, one_sided, margin
        )
    mask = plausible_token_mask(target_logits, plausibility_threshold, min_tokens_to_keep)
    tokens = mask.reshape(-1, vocab_size).any(dim=0).nonzero().squeeze(-1)
    if tokens.numel() > max_plausible_fraction * vocab_size:
        return filtered_assistant_logits(
            target_logits, lm_head(assistant_hidden), plausibility_threshold, min_tokens_to_keep, one_sided, margin
        )
    bias = lm_head.bias[tokens] if lm_head.bias is not None else None
    partial_logits = F.linear(assistant_hidden, weight[tokens], bias).float()
    filtered = torch.zeros(target_logits.shape, dtype=torch.float32, device=target_logits.device)
    filtered[..., tokens] = _centred_on(partial_logits, mask[..., tokens], one_sided, margin)
    return filtered


def assistant_mass_on_plausible(
    target_logits: torch.Tensor,
    assistant_logits: torch.Tensor,
    plausibility_threshold: float,
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    """`P_A(S)`: the assistant's probability mass on the target's plausible tokens, shape `(..., 1)`."""
    mask = plausible_token_mask(target_logits, plausibility_threshold, min_tokens_to_keep)
    return _mass_on(assistant_logits, mask)


def _mass_on(assistant_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    log_probs = assistant_logits.float().log_softmax(dim=-1)
    return log_probs.masked_fill(~mask, -math.inf).logsumexp(dim=-1, keepdim=True).exp()


def uld_logits(
    target_logits: torch.Tensor,
    assistant: torch.Tensor,
    assistant_weight: float,
    plausibility_threshold: float,
    min_tokens_to_keep: int = 1,
    lm_head: nn.Module | None = None,
    weight_by_assistant_mass: bool = False,
    one_sided_subtraction: bool = False,
    subtraction_margin: float = 0.0,
    exempt_token_ids: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """The unlearned model's logits `z_T − α · f(z_A)` (see the module docstring), in the target's dtype.

    `assistant` holds the assistant's logits, or, with `lm_head`, its final hidden states: then the head runs only on
    the plausible tokens (see [`filtered_assistant_logits_from_hidden`]). With `weight_by_assistant_mass`, `f(z_A)`
    is scaled by `P_A(S)` at each position (see the module docstring); the whole head then runs. With
    `one_sided_subtraction`, `f(z_A)` is lowered by `subtraction_margin` and clipped at zero before any scaling: the
    assistant only lowers tokens, and only by what it prefers beyond the margin. `f(z_A)` is zero on
    `exempt_token_ids` (the tokenizer's special tokens with `exempt_special_tokens`): the target's logits stand there.
    """
    check_subtraction_margin(subtraction_margin, one_sided_subtraction)
    if assistant_weight == 0:
        return target_logits
    if weight_by_assistant_mass:
        assistant_logits = assistant if lm_head is None else lm_head(assistant)
        mask = plausible_token_mask(target_logits, plausibility_threshold, min_tokens_to_keep)
        filtered = _centred_on(assistant_logits, mask, one_sided_subtraction, subtraction_margin) * _mass_on(
            assistant_logits, mask
        )
    elif lm_head is None:
        filtered = filtered_assistant_logits(
            target_logits,
            assistant,
            plausibility_threshold,
            min_tokens_to_keep,
            one_sided_subtraction,
            subtraction_margin,
        )
    else:
        filtered = filtered_assistant_logits_from_hidden(
            target_logits,
            assistant,
            lm_head,
            plausibility_threshold,
            min_tokens_to_keep,
            one_sided=one_sided_subtraction,
            margin=subtraction_margin,
        )
    if exempt_token_ids is not None and len(exempt_token_ids) > 0:
        exempt = torch.as_tensor(exempt_token_ids, dtype=torch.long, device=filtered.device)
        filtered = filtered.index_fill(-1, exempt, 0.0)
    return (target_logits.float() - assistant_weight * filtered).to(target_logits.dtype)

"""Unlearning objectives: one function per loss term.

Every function takes the logits of a causal LM and the matching `labels` (the input ids with `-100` on tokens that
do not count: prompt and padding), predicts token `t + 1` from position `t`, and returns a scalar.

`num_items_in_batch` is the number of counted tokens in the whole optimiser step (all gradient-accumulation
micro-batches, all processes). Dividing a micro-batch's *sum* by it, rather than taking the micro-batch's mean,
makes gradient accumulation give exactly the gradient of one large batch (the transformers `num_items_in_batch`
convention). When it is `None`, the functions average over the counted tokens of this batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shift_for_next_token(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align position `t`'s logits with token `t + 1`: returns `(logits[:, :-1], labels[:, 1:])`."""
    return logits[:, :-1, :], labels[:, 1:]


def _reduce(
    per_token: torch.Tensor, mask: torch.Tensor, num_items_in_batch: torch.Tensor | int | None
) -> torch.Tensor:
    total = (per_token * mask).sum()
    if num_items_in_batch is None:
        return total / mask.sum().clamp(min=1)
    return total / num_items_in_batch


def count_loss_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Number of tokens a loss counts in `labels`: the shifted labels that are not `-100`."""
    return labels[:, 1:].ne(IGNORE_INDEX).sum()


def nll_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    r"""Mean next-token negative log-likelihood over the counted tokens.

    $$\mathcal{L}_{\text{NLL}} = -\frac{1}{N} \sum_{t:\, y_t \neq -100} \log p_\theta(y_t \mid y_{<t})$$

    In ULD this is the forget term `L_f`: the assistant learns to *remember* the forget answers
    (Ji et al. 2024, "Reversing the Forget-Retain Objectives", arXiv 2406.08607, Eq. 4).
    """
    shifted_logits, shifted_labels = shift_for_next_token(logits, labels)
    mask = shifted_labels.ne(IGNORE_INDEX)
    per_token = F.cross_entropy(
        shifted_logits.float().transpose(1, 2), shifted_labels.masked_fill(~mask, 0), reduction="none"
    )
    return _reduce(per_token, mask, num_items_in_batch)


def uniform_kl_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    r"""Mean `KL(uniform ‖ p_θ)` over the counted tokens' next-token distributions.

    $$\mathcal{L}_{\text{U}} = \frac{1}{N} \sum_{t:\, y_t \neq -100} \mathrm{KL}\big(\mathcal{U}_V \,\|\,
    p_\theta(\cdot \mid y_{<t})\big) = \frac{1}{N} \sum_t \Big(-\log V - \frac{1}{V} \sum_{v=1}^{V}
    \log p_\theta(v \mid y_{<t})\Big)$$

    It is zero exactly when the distribution is uniform (entropy `log V`). In ULD this is the retain term `L_r`:
    the assistant learns to *forget* the retain set, so subtracting it leaves the target unchanged there
    (Ji et al. 2024, arXiv 2406.08607, Eq. 5). Unlike the reference code, only answer tokens count.
    """
    shifted_logits, shifted_labels = shift_for_next_token(logits, labels)
    mask = shifted_labels.ne(IGNORE_INDEX)
    log_probs = F.log_softmax(shifted_logits.float(), dim=-1)
    vocab_size = log_probs.shape[-1]
    per_token = -math.log(vocab_size) - log_probs.mean(dim=-1)
    return _reduce(per_token, mask, num_items_in_batch)

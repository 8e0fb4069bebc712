"""Unlearning objectives: one function per loss term.

Token-level terms take an [`AnswerTokens`]: the next-token logits at the counted (answer) positions of a batch,
flattened, as `UnlearnTrainer` computes them (the LM head runs only there). From a causal LM's full logits and its
`labels` (`-100` on prompt and padding), `AnswerTokens.from_logits(logits, labels)` builds one.

`num_items_in_batch` is the number of counted tokens in the whole optimiser step (all gradient-accumulation
micro-batches, all processes). Dividing a micro-batch's *sum* by it, rather than taking the micro-batch's mean,
makes gradient accumulation give exactly the gradient of one large batch (the transformers `num_items_in_batch`
convention). When it is `None`, the functions average over the counted tokens of this batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .answer_tokens import IGNORE_INDEX, AnswerTokens

__all__ = [
    "IGNORE_INDEX",
    "AnswerTokens",
    "count_loss_tokens",
    "dpo_loss",
    "gradient_ascent_loss",
    "nll_loss",
    "npo_loss",
    "plausible_uniform_kl_loss",
    "reference_kl_loss",
    "sequence_log_probs",
    "simnpo_loss",
    "uniform_kl_loss",
]


def _reduce(per_token: torch.Tensor, num_items_in_batch: torch.Tensor | int | None) -> torch.Tensor:
    total = per_token.sum()
    if num_items_in_batch is None:
        return total / max(per_token.shape[0], 1)
    return total / num_items_in_batch


def count_loss_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Number of tokens a loss counts in `labels`: the shifted labels that are not `-100`."""
    return labels[:, 1:].ne(IGNORE_INDEX).sum()


def _token_log_probs(answer: AnswerTokens) -> torch.Tensor:
    return -F.cross_entropy(answer.logits.float(), answer.targets, reduction="none")


def nll_loss(answer: AnswerTokens, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    r"""Mean next-token negative log-likelihood over the counted tokens.

    $$\mathcal{L}_{\text{NLL}} = -\frac{1}{N} \sum_{t:\, y_t \neq -100} \log p_\theta(y_t \mid y_{<t})$$

    In ULD this is the forget term `L_f`: the assistant learns to *remember* the forget answers
    (Ji et al. 2024, "Reversing the Forget-Retain Objectives", arXiv 2406.08607, Eq. 4).
    """
    return _reduce(-_token_log_probs(answer), num_items_in_batch)


def uniform_kl_loss(answer: AnswerTokens, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    r"""Mean `KL(uniform ‖ p_θ)` over the counted tokens' next-token distributions.

    $$\mathcal{L}_{\text{U}} = \frac{1}{N} \sum_{t:\, y_t \neq -100} \mathrm{KL}\big(\mathcal{U}_V \,\|\,
    p_\theta(\cdot \mid y_{<t})\big) = \frac{1}{N} \sum_t \Big(\operatorname{logsumexp}(z_t) -
    \frac{1}{V} \sum_{v=1}^{V} z_{t,v} - \log V\Big)$$

    with `z_t` the logits (`log p = z − logsumexp(z)`, so no vocabulary-sized log-softmax is kept). It is zero
    exactly when the distribution is uniform (entropy `log V`). In ULD this is the retain term `L_r`: the assistant
    learns to *forget* the retain set, so subtracting it leaves the target unchanged there (Ji et al. 2024,
    arXiv 2406.08607, Eq. 5). Unlike the reference code, only answer tokens count.
    """
    logits = answer.logits.float()
    per_token = torch.logsumexp(logits, dim=-1) - logits.mean(dim=-1) - math.log(logits.shape[-1])
    return _reduce(per_token, num_items_in_batch)


def plausible_uniform_kl_loss(
    answer: AnswerTokens, plausible_token_ids: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    r"""Mean `KL(uniform on S_t ‖ p_θ restricted to S_t)` over the counted tokens, `S_t` a given set of tokens.

    $$\mathcal{L}_{\text{S}} = \frac{1}{N} \sum_{t} \mathrm{KL}\big(\mathcal{U}_{S_t} \,\|\, p_\theta(\cdot \mid
    y_{<t}, S_t)\big) = \frac{1}{N} \sum_t \Big(\operatorname{logsumexp}_{v \in S_t}(z_{t,v}) -
    \frac{1}{|S_t|} \sum_{v \in S_t} z_{t,v} - \log |S_t|\Big)$$

    It is zero exactly when the logits are equal on `S_t`, whatever they are elsewhere. In ULD `S_t` is the
    target's plausible set at a retain position, the only tokens where the assistant is subtracted
    (`unlearn_peft.logit_difference`): an assistant flat there changes nothing on retain data, which is ULD's
    premise (Ji et al. 2024, arXiv 2406.08607, Sec. 3), while `uniform_kl_loss` over the whole vocabulary leaves
    differences of several nats among those few tokens (`benchmarks/RESULTS.md`). An addition of this library.

    Args:
        answer: the assistant's logits at the counted positions.
        plausible_token_ids (`torch.Tensor` of shape `(num_tokens, max_set_size)`): the ids of `S_t` for each
            counted token, padded with `-1`; every row holds at least one id.
        num_items_in_batch: see the module docstring.
    """
    if plausible_token_ids.shape[0] != answer.num_tokens:
        raise ValueError(
            f"plausible_token_ids has {plausible_token_ids.shape[0]} rows for {answer.num_tokens} counted tokens."
        )
    in_set = plausible_token_ids.ge(0)
    logits = answer.logits.float().gather(-1, plausible_token_ids.clamp(min=0))
    set_size = in_set.sum(dim=-1)
    log_normaliser = torch.logsumexp(logits.masked_fill(~in_set, -math.inf), dim=-1)
    mean_logit = (logits * in_set).sum(dim=-1) / set_size
    per_token = log_normaliser - mean_logit - torch.log(set_size.float())
    return _reduce(per_token, num_items_in_batch)


def sequence_log_probs(answer: AnswerTokens) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-sequence answer log-likelihood `log π(y|x) = Σ_t log π(y_t | x, y_{<t})` and answer length `|y|`.

    Returns two tensors of shape `(num_rows,)`: the summed log-probabilities of each sequence's counted tokens, and
    their number.
    """
    token_log_probs = _token_log_probs(answer)
    sums = token_log_probs.new_zeros(answer.num_rows).index_add(0, answer.rows, token_log_probs)
    return sums, torch.bincount(answer.rows, minlength=answer.num_rows)


def _mean_over_sequences(per_sequence: torch.Tensor, num_sequences: torch.Tensor | int | None) -> torch.Tensor:
    return per_sequence.sum() / (per_sequence.shape[0] if num_sequences is None else num_sequences)


def gradient_ascent_loss(answer: AnswerTokens, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    r"""Gradient ascent on the forget set: the negated mean token NLL, `L_f = −NLL(y_f | x_f)`.

    Minimising it maximises the forget answers' NLL (Jang et al. 2023, "Knowledge Unlearning for Mitigating Privacy
    Risks in Language Models", arXiv 2210.01504). It is unbounded below, which is why it collapses models.
    """
    return -nll_loss(answer, num_items_in_batch)


def npo_loss(
    log_probs: torch.Tensor,
    reference_log_probs: torch.Tensor,
    beta: float,
    num_sequences: torch.Tensor | int | None = None,
) -> torch.Tensor:
    r"""Negative Preference Optimization on the forget set (Zhang et al. 2024, arXiv 2404.05868, Eq. 3).

    $$\mathcal{L}_{\text{NPO}} = -\frac{2}{\beta}\,\frac{1}{n}\sum_i \log\sigma\Big(-\beta\,\big[\log\pi(y_i|x_i) -
    \log\pi_{\text{ref}}(y_i|x_i)\big]\Big)$$

    with sequence log-likelihoods summed over answer tokens; `β = 0.1` by default. Bounded below by 0, it slows down
    as the model moves away from the reference, unlike gradient ascent.
    """
    per_sequence = -(2.0 / beta) * F.logsigmoid(-beta * (log_probs - reference_log_probs))
    return _mean_over_sequences(per_sequence, num_sequences)


def simnpo_loss(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    beta: float,
    delta: float = 0.0,
    num_sequences: torch.Tensor | int | None = None,
) -> torch.Tensor:
    r"""SimNPO: reference-free, length-normalised NPO (Fan et al. 2024, arXiv 2410.07163, Eq. 4).

    $$\mathcal{L}_{\text{SimNPO}} = -\frac{2}{\beta}\,\frac{1}{n}\sum_i
    \log\sigma\Big(-\frac{\beta}{|y_i|}\log\pi(y_i|x_i) - \beta\delta\Big)$$

    with `β = 4.5` and `δ = 0` by default.
    """
    per_sequence = -(2.0 / beta) * F.logsigmoid(-(beta / lengths.clamp(min=1)) * log_probs - beta * delta)
    return _mean_over_sequences(per_sequence, num_sequences)


def dpo_loss(
    chosen_log_probs: torch.Tensor,
    chosen_reference_log_probs: torch.Tensor,
    rejected_log_probs: torch.Tensor,
    rejected_reference_log_probs: torch.Tensor,
    beta: float,
    num_sequences: torch.Tensor | int | None = None,
) -> torch.Tensor:
    r"""DPO with a refusal as the chosen answer and the forget answer as the rejected one ("IdkDPO").

    $$\mathcal{L}_{\text{IdkDPO}} = -\frac{2}{\beta}\,\frac{1}{n}\sum_i \log\sigma\Big(\beta\Big[\log
    \frac{\pi(y^{\text{idk}}_i|x_i)}{\pi_{\text{ref}}(y^{\text{idk}}_i|x_i)} - \log
    \frac{\pi(y_i|x_i)}{\pi_{\text{ref}}(y_i|x_i)}\Big]\Big)$$

    Rafailov et al. 2023 (arXiv 2305.18290) with the `2/β` scale of open-unlearning's DPO (Maini et al. 2024, TOFU
    §4 "Preference Optimization"); `β = 0.1` by default.
    """
    margin = (chosen_log_probs - chosen_reference_log_probs) - (rejected_log_probs - rejected_reference_log_probs)
    per_sequence = -(2.0 / beta) * F.logsigmoid(beta * margin)
    return _mean_over_sequences(per_sequence, num_sequences)


def reference_kl_loss(
    answer: AnswerTokens, reference: AnswerTokens, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    r"""Mean `KL(π_ref ‖ π)` of the next-token distributions over the counted (retain answer) tokens.

    $$\mathcal{L}_{\text{KL}} = \frac{1}{N}\sum_{t} \sum_v \pi_{\text{ref}}(v|y_{<t})
    \log\frac{\pi_{\text{ref}}(v|y_{<t})}{\pi(v|y_{<t})}$$

    `reference` holds the reference model's logits at the same positions. The retain term of the "KL" baselines
    (Maini et al. 2024, TOFU §4): keep the model close to where it started.
    """
    log_probs = F.log_softmax(answer.logits.float(), dim=-1)
    reference_log_probs = F.log_softmax(reference.logits.float(), dim=-1)
    per_token = (reference_log_probs.exp() * (reference_log_probs - log_probs)).sum(dim=-1)
    return _reduce(per_token, num_items_in_batch)

import math

import pytest
import torch
from torch import nn

from unlearn_peft.logit_difference import (
    DEFAULT_MIN_TOKENS_TO_KEEP,
    filtered_assistant_logits,
    filtered_assistant_logits_from_hidden,
    plausible_token_mask,
    uld_logits,
)


def _logits(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 17, generator=torch.Generator().manual_seed(seed)) * 3


def _assert_head_on_hidden_states_gives_the_same_logits(
    target: torch.Tensor, alpha: float, tau: float, floor: int, **variant: bool
) -> tuple[nn.Linear, torch.Tensor]:
    """`uld_logits` given hidden states and the head equals it given the head's logits; returns the head and states."""
    torch.manual_seed(0)
    head = nn.Linear(8, 17, bias=True)
    hidden = torch.randn(2, 3, 8)
    torch.testing.assert_close(
        uld_logits(target, hidden, alpha, tau, floor, lm_head=head, **variant),
        uld_logits(target, head(hidden), alpha, tau, floor, **variant),
    )
    return head, hidden


def test_zero_weight_returns_the_target():
    target = _logits(0)
    assert torch.equal(uld_logits(target, _logits(1), 0.0, 1e-2), target)


def test_plausible_set_is_relative_to_the_top_probability():
    target = torch.log(torch.tensor([[0.5, 0.3, 0.004, 0.196]]))
    assert plausible_token_mask(target, 1e-2).tolist() == [[True, True, False, True]]
    assert plausible_token_mask(target, 0.0).all()


def test_filter_is_invariant_to_per_position_shifts_of_the_assistant():
    target, assistant = _logits(0), _logits(1)
    shifted = assistant + torch.randn(2, 3, 1, generator=torch.Generator().manual_seed(2)) * 50
    torch.testing.assert_close(
        filtered_assistant_logits(target, shifted, 1e-2),
        filtered_assistant_logits(target, assistant, 1e-2),
        rtol=0,
        atol=1e-4,  # float32 rounding of shifts up to ~100
    )
    outside = ~plausible_token_mask(target, 1e-2)
    assert outside.any() and (filtered_assistant_logits(target, assistant, 1e-2)[outside] == 0).all()


def test_without_filter_logits_move_linearly_in_alpha():
    target, assistant = _logits(0), _logits(1)
    implied = [(target - uld_logits(target, assistant, alpha, 0.0)) / alpha for alpha in (0.5, 1.25)]
    torch.testing.assert_close(implied[0], implied[1])
    centred = assistant - assistant.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(implied[0], centred)


def test_head_on_plausible_rows_only_equals_the_full_head():
    torch.manual_seed(0)
    head = nn.Linear(8, 17, bias=True)
    hidden, target = torch.randn(2, 3, 8), _logits(0)
    full = filtered_assistant_logits(target, head(hidden), 0.05)
    restricted = filtered_assistant_logits_from_hidden(target, hidden, head, 0.05, max_plausible_fraction=1.0)
    torch.testing.assert_close(restricted, full)
    no_filter = filtered_assistant_logits_from_hidden(target, hidden, head, 0.0)
    torch.testing.assert_close(no_filter, filtered_assistant_logits(target, head(hidden), 0.0))


def test_floor_keeps_the_targets_top_tokens_and_stays_shift_invariant():
    target, assistant = _logits(0), _logits(1)
    for floor in (1, 4, 17):
        mask = plausible_token_mask(target, 0.5, floor)
        top = target.topk(floor, dim=-1).indices
        assert mask.gather(-1, top).all()
        # The threshold's own set is kept as well: the floor only ever adds tokens.
        assert (mask | plausible_token_mask(target, 0.5, 1)).equal(mask)
        assert (mask.sum(-1) >= floor).all()
    assert plausible_token_mask(target, 0.5, 17).all()  # a floor of the whole vocabulary keeps everything
    shifted = assistant + torch.randn(2, 3, 1, generator=torch.Generator().manual_seed(2)) * 50
    torch.testing.assert_close(
        filtered_assistant_logits(target, shifted, 1e-2, 4),
        filtered_assistant_logits(target, assistant, 1e-2, 4),
        rtol=0,
        atol=1e-4,
    )


def test_the_default_floor_lets_uld_flip_a_memorised_answer():
    """A target that memorised its answer (p ≥ 0.999 on one token) and an assistant that remembers it too.

    The assistant is what ULD trains: as sure of the forgotten token as the target (p = 0.999) and uniform over the
    rest of the vocabulary. With the threshold alone the plausible set is that one token, `f ≡ 0` and the answer
    stands; the default floor lets the assistant push it below the target's runners-up.
    """
    vocab_size, answer, runners_up = 49152, 7, torch.arange(10, 19)
    target_probs = torch.full((vocab_size,), 1e-9)
    target_probs[runners_up] = 1e-4
    target_probs[answer] = 0.999
    target = torch.log(target_probs / target_probs.sum())
    assistant = torch.full((vocab_size,), math.log(0.001 / (vocab_size - 1)))
    assistant[answer] = math.log(0.999)
    assert torch.softmax(target, -1)[answer] >= 0.999 and assistant.argmax() == answer == target.argmax()

    unfiltered_set = uld_logits(target, assistant, 0.75, 1e-2, min_tokens_to_keep=1)
    assert plausible_token_mask(target, 1e-2, 1).sum() == 1 and unfiltered_set.argmax() == answer
    unlearned = uld_logits(target, assistant, 0.75, 1e-2, min_tokens_to_keep=DEFAULT_MIN_TOKENS_TO_KEEP)
    assert unlearned.argmax() != answer and unlearned.argmax() in runners_up
    # By the formula: the answer drops by α·(log p_A(a) − the mean of log p_A over the kept set).
    kept = plausible_token_mask(target, 1e-2, DEFAULT_MIN_TOKENS_TO_KEEP)
    centre = torch.log_softmax(assistant, -1)[kept].mean()
    expected_answer = target[answer] - 0.75 * (torch.log_softmax(assistant, -1)[answer] - centre)
    torch.testing.assert_close(unlearned[answer], expected_answer)


def test_mass_weighting_scales_each_position_by_the_assistants_mass_on_the_plausible_set():
    """`z_T − α · P_A(S) · f(z_A)`, with `P_A(S)` summed by hand from the assistant's softmax over the mask."""
    target, assistant = _logits(0), _logits(1)
    alpha, tau, floor = 0.75, 1e-2, 3
    mask = plausible_token_mask(target, tau, floor)
    probabilities = torch.softmax(assistant.double(), dim=-1)
    mass = torch.stack(
        [
            torch.stack([probabilities[b, t][mask[b, t]].sum() for t in range(target.shape[1])])
            for b in range(target.shape[0])
        ]
    )
    log_probs = torch.log(probabilities)
    expected = target.double().clone()
    for b in range(target.shape[0]):
        for t in range(target.shape[1]):
            plausible = mask[b, t]
            centred = log_probs[b, t][plausible] - log_probs[b, t][plausible].mean()
            expected[b, t][plausible] -= alpha * mass[b, t] * centred
    weighted = uld_logits(target, assistant, alpha, tau, floor, weight_by_assistant_mass=True)
    torch.testing.assert_close(weighted.double(), expected, rtol=0, atol=1e-4)
    assert 0 < mass.min() and mass.max() < 1  # the weighting really scales: not 0 or 1 everywhere

    # With the head given hidden states, the whole head runs and the result is the same.
    _assert_head_on_hidden_states_gives_the_same_logits(target, alpha, tau, floor, weight_by_assistant_mass=True)


def test_mass_weighting_leaves_a_flat_assistant_without_effect_and_a_sure_one_almost_unchanged():
    """The case it is for: a near-uniform assistant (retain data) with log-probability noise among the plausible
    tokens moves the target's logits by that noise unweighted, and by almost nothing weighted; an assistant sure of
    one plausible token (forget data) subtracts almost what it did."""
    vocab_size = 49152
    target = torch.full((vocab_size,), -20.0)
    target[:5] = torch.tensor([0.0, -0.3, -1.0, -2.0, -2.5])
    noise = torch.zeros(vocab_size)
    noise[:5] = torch.tensor([1.5, -1.5, 0.0, 0.5, -0.5])  # flat over the vocabulary, ±1.5 nats among the plausible
    flat = uld_logits(target, noise, 0.6, 1e-2, 1)
    flat_weighted = uld_logits(target, noise, 0.6, 1e-2, 1, weight_by_assistant_mass=True)
    assert flat.argmax() != target.argmax()  # the noise flips the answer unweighted
    assert flat_weighted.argmax() == target.argmax()
    assert (flat_weighted - target).abs().max() < 1e-3
    sure = torch.full((vocab_size,), -10.0)
    sure[0] = 12.0
    weighted = uld_logits(target, sure, 0.6, 1e-2, 1, weight_by_assistant_mass=True)
    unweighted = uld_logits(target, sure, 0.6, 1e-2, 1)
    assert weighted.argmax() == unweighted.argmax() != 0
    torch.testing.assert_close(weighted, unweighted, rtol=0, atol=0.1)


def test_one_sided_subtraction_clips_the_centred_assistant_at_zero():
    """`z_T − α · max(0, f(z_A))` with `f` computed by hand in float64; the head-on-plausible-rows path and the
    mass-weighted path give the same clipped values."""
    target, assistant = _logits(0), _logits(1)
    alpha, tau, floor = 0.75, 1e-2, 4
    mask = plausible_token_mask(target, tau, floor)
    log_probs = torch.log_softmax(assistant.double(), dim=-1)
    expected = target.double().clone()
    raised = False
    for b in range(target.shape[0]):
        for t in range(target.shape[1]):
            plausible = mask[b, t]
            centred = log_probs[b, t][plausible] - log_probs[b, t][plausible].mean()
            raised |= bool((centred < 0).any())
            expected[b, t][plausible] -= alpha * centred.clamp(min=0)
    one_sided = uld_logits(target, assistant, alpha, tau, floor, one_sided_subtraction=True)
    torch.testing.assert_close(one_sided.double(), expected, rtol=0, atol=1e-4)
    assert raised  # the unclipped formula raises some token here: the clip has work to do
    assert (one_sided <= target + 1e-6).all()  # never raises a token
    assert (uld_logits(target, assistant, alpha, tau, floor) > target + 1e-3).any()  # the plain formula does

    head, hidden = _assert_head_on_hidden_states_gives_the_same_logits(
        target, alpha, tau, floor, one_sided_subtraction=True
    )
    probabilities = torch.softmax(head(hidden).double(), dim=-1)
    weighted = uld_logits(
        target, head(hidden), alpha, tau, floor, weight_by_assistant_mass=True, one_sided_subtraction=True
    )
    clipped = torch.log(probabilities) - (torch.log(probabilities) * mask).sum(-1, keepdim=True) / mask.sum(-1, True)
    mass = (probabilities * mask).sum(-1, keepdim=True)
    torch.testing.assert_close(
        weighted.double(), target.double() - alpha * mass * (clipped.clamp(min=0) * mask), rtol=0, atol=1e-4
    )


def test_subtraction_margin_lowers_only_what_the_assistant_prefers_beyond_it():
    """`z_T − α · max(0, f(z_A) − δ)` with `f` by hand in float64, on every path; a token the assistant prefers by
    less than δ keeps the target's logit, and an assistant whose noise stays within δ changes nothing."""
    target, assistant = _logits(0), _logits(1)
    alpha, tau, floor, margin = 0.75, 1e-2, 4, 0.5
    mask = plausible_token_mask(target, tau, floor)
    log_probs = torch.log_softmax(assistant.double(), dim=-1)
    centred = log_probs - (log_probs * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
    expected = target.double() - alpha * (centred - margin).clamp(min=0) * mask
    with_margin = uld_logits(
        target, assistant, alpha, tau, floor, one_sided_subtraction=True, subtraction_margin=margin
    )
    torch.testing.assert_close(with_margin.double(), expected, rtol=0, atol=1e-4)
    within = mask & (centred > 0) & (centred <= margin)
    assert within.any() and (mask & (centred > margin)).any()  # both cases occur here
    assert torch.equal(with_margin[within], target[within])
    without = uld_logits(target, assistant, alpha, tau, floor, one_sided_subtraction=True)
    assert (without[within] < target[within]).all()  # the margin is what keeps them
    _assert_head_on_hidden_states_gives_the_same_logits(
        target, alpha, tau, floor, one_sided_subtraction=True, subtraction_margin=margin
    )

    noise_only = uld_logits(
        target,
        assistant,
        alpha,
        tau,
        floor,
        one_sided_subtraction=True,
        subtraction_margin=float(centred.max()) + 0.01,
    )
    assert torch.equal(noise_only, target)


@pytest.mark.parametrize(("margin", "one_sided"), [(-0.5, True), (2.0, False)])
def test_subtraction_margin_needs_the_one_sided_subtraction_and_a_non_negative_value(margin, one_sided):
    with pytest.raises(ValueError, match=f"subtraction_margin={margin} must be ≥ 0 and needs one_sided_subtraction"):
        uld_logits(_logits(0), _logits(1), 0.6, 1e-2, 4, one_sided_subtraction=one_sided, subtraction_margin=margin)


def test_one_sided_subtraction_keeps_the_targets_order_among_the_tokens_the_assistant_rejects():
    """A memorised target (its answer far above the runners-up) and an assistant that remembers the answer and
    holds noise far below uniform among the runners-up: plain ULD picks the runner-up the assistant finds least
    likely, the one-sided version the target's own second choice."""
    vocab_size = 100
    target = torch.full((vocab_size,), -30.0)
    target[:4] = torch.tensor([0.0, -8.0, -9.0, -10.0])  # answer, then the target's runners-up in order
    assistant = torch.full((vocab_size,), -5.0)
    assistant[:4] = torch.tensor([15.0, -10.0, -12.0, -25.0])  # remembers the answer; rejects token 3 the most
    plain = uld_logits(target, assistant, 1.0, 1e-2, 4)
    one_sided = uld_logits(target, assistant, 1.0, 1e-2, 4, one_sided_subtraction=True)
    assert plain.argmax() == 3
    assert one_sided.argmax() == 1


@pytest.mark.parametrize(
    "variant",
    [{}, {"one_sided_subtraction": True, "subtraction_margin": 0.5}, {"weight_by_assistant_mass": True}],
    ids=["plain", "one-sided with margin", "mass-weighted"],
)
def test_exempt_tokens_keep_the_targets_logits_and_nothing_else_changes(variant):
    """On the exempt tokens the result is the target's logit exactly, also where they are plausible; everywhere else
    it equals the result without exemption; on every path."""
    target, assistant = _logits(0), _logits(1)
    alpha, tau, floor = 0.75, 1e-2, 4
    mask = plausible_token_mask(target, tau, floor)
    exempt = [3, 11]
    assert mask[..., exempt].any()  # the exemption matters at some position
    without = uld_logits(target, assistant, alpha, tau, floor, **variant)
    with_exempt = uld_logits(target, assistant, alpha, tau, floor, exempt_token_ids=exempt, **variant)
    assert not torch.equal(without[..., exempt], target[..., exempt])
    assert torch.equal(with_exempt[..., exempt], target[..., exempt])
    others = [token for token in range(target.shape[-1]) if token not in exempt]
    assert torch.equal(with_exempt[..., others], without[..., others])
    assert torch.equal(uld_logits(target, assistant, alpha, tau, floor, exempt_token_ids=[], **variant), without)
    _assert_head_on_hidden_states_gives_the_same_logits(
        target, alpha, tau, floor, exempt_token_ids=torch.tensor(exempt), **variant
    )

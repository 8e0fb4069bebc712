import torch
from torch import nn

from unlearn_peft.logit_difference import (
    filtered_assistant_logits,
    filtered_assistant_logits_from_hidden,
    plausible_token_mask,
    uld_logits,
)


def _logits(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 17, generator=torch.Generator().manual_seed(seed)) * 3


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

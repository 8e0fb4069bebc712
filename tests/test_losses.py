import math

import pytest
import torch

from unlearn_peft.losses import IGNORE_INDEX, AnswerTokens, count_loss_tokens, nll_loss, uniform_kl_loss


def _batch(seed: int = 0, vocab: int = 11):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, vocab, generator=generator)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5], [IGNORE_INDEX, 7, 8, IGNORE_INDEX, IGNORE_INDEX]])
    return logits, labels


def test_nll_loss_matches_hand_computation():
    logits, labels = _batch()
    terms = []
    for row in range(2):
        for position in range(4):
            target = labels[row, position + 1].item()
            if target != IGNORE_INDEX:
                terms.append(-torch.log_softmax(logits[row, position], dim=-1)[target].item())
    assert len(terms) == 5 == count_loss_tokens(labels).item()
    assert nll_loss(AnswerTokens.from_logits(logits, labels)).item() == pytest.approx(
        sum(terms) / len(terms), rel=1e-6
    )
    assert nll_loss(AnswerTokens.from_logits(logits, labels), num_items_in_batch=10).item() == pytest.approx(
        sum(terms) / 10, rel=1e-6
    )


def test_uniform_kl_is_zero_for_uniform_and_matches_formula():
    logits, labels = _batch()
    assert uniform_kl_loss(AnswerTokens.from_logits(torch.zeros_like(logits), labels)).item() == pytest.approx(
        0.0, abs=1e-6
    )
    vocab = logits.shape[-1]
    terms = []
    for row in range(2):
        for position in range(4):
            if labels[row, position + 1].item() != IGNORE_INDEX:
                probs = torch.softmax(logits[row, position], dim=-1)
                terms.append(sum((1 / vocab) * math.log((1 / vocab) / p) for p in probs.tolist()))
    assert uniform_kl_loss(AnswerTokens.from_logits(logits, labels)).item() == pytest.approx(
        sum(terms) / len(terms), rel=1e-5
    )
    assert uniform_kl_loss(AnswerTokens.from_logits(logits, labels)).item() > 0


def test_masked_positions_do_not_matter():
    logits, labels = _batch()
    changed = logits.clone()
    changed[0, 0] += 100.0  # predicts a masked label
    changed[1, 4] += 100.0  # last position predicts nothing
    assert nll_loss(AnswerTokens.from_logits(changed, labels)).item() == pytest.approx(
        nll_loss(AnswerTokens.from_logits(logits, labels)).item(), rel=1e-6
    )
    assert uniform_kl_loss(AnswerTokens.from_logits(changed, labels)).item() == pytest.approx(
        uniform_kl_loss(AnswerTokens.from_logits(logits, labels)).item(), rel=1e-6
    )


def test_split_batches_sum_to_full_batch_with_num_items():
    logits, labels = _batch()
    total = count_loss_tokens(labels)
    for loss in (nll_loss, uniform_kl_loss):
        halves = [AnswerTokens.from_logits(logits[i : i + 1], labels[i : i + 1]) for i in range(2)]
        split = loss(halves[0], total) + loss(halves[1], total)
        assert split.item() == pytest.approx(loss(AnswerTokens.from_logits(logits, labels)).item(), rel=1e-6)

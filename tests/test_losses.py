import math

import pytest
import torch

from unlearn_peft.losses import (
    IGNORE_INDEX,
    AnswerTokens,
    count_loss_tokens,
    nll_loss,
    plausible_uniform_kl_loss,
    uniform_kl_loss,
)


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


def _token_sets(answer: AnswerTokens) -> tuple[list[list[int]], torch.Tensor]:
    """A different set of 1 to 4 token ids per counted token, and the same sets padded with -1."""
    generator = torch.Generator().manual_seed(3)
    vocab = answer.logits.shape[-1]
    sets = [torch.randperm(vocab, generator=generator)[: 1 + index % 4].tolist() for index in range(answer.num_tokens)]
    padded = torch.full((len(sets), 4), -1)
    for index, ids in enumerate(sets):
        padded[index, : len(ids)] = torch.tensor(ids)
    return sets, padded


def test_plausible_uniform_kl_matches_its_definition():
    logits, labels = _batch()
    answer = AnswerTokens.from_logits(logits, labels)
    sets, padded = _token_sets(answer)
    terms = []
    for position, ids in enumerate(sets):
        restricted = torch.softmax(answer.logits[position, ids], dim=-1).tolist()  # p_θ renormalised on S
        terms.append(sum((1 / len(ids)) * math.log((1 / len(ids)) / p) for p in restricted))
    assert plausible_uniform_kl_loss(answer, padded).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert plausible_uniform_kl_loss(answer, padded, num_items_in_batch=10).item() == pytest.approx(
        sum(terms) / 10, rel=1e-5
    )
    assert sum(terms) > 0 and all(len(ids) > 1 or term == 0 for ids, term in zip(sets, terms, strict=True))


def test_plausible_uniform_kl_is_zero_when_flat_on_the_set_whatever_elsewhere():
    logits, labels = _batch()
    answer = AnswerTokens.from_logits(logits, labels)
    _, padded = _token_sets(answer)
    flat_on_set = answer.logits.clone()
    for position, ids in enumerate(padded):
        flat_on_set[position, ids[ids >= 0]] = 2.0
    flat = AnswerTokens(flat_on_set, answer.targets, answer.rows, answer.num_rows)
    assert plausible_uniform_kl_loss(flat, padded).item() == pytest.approx(0.0, abs=1e-6)
    assert uniform_kl_loss(flat).item() > 0.1  # not flat over the vocabulary
    with pytest.raises(ValueError, match="plausible_token_ids has 4 rows for 5 counted tokens"):
        plausible_uniform_kl_loss(answer, padded[:4])

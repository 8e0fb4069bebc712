"""The LM head runs only at answer positions: same logits, same losses and gradients as the full forward."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from unlearn_peft.answer_tokens import AnswerTokens, answer_position_mask, forward_answer_tokens
from unlearn_peft.losses import IGNORE_INDEX, nll_loss, sequence_log_probs, uniform_kl_loss


def _batch(vocab_size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 7:] = 0  # right padding
    labels = input_ids.clone()
    labels[0, :4] = IGNORE_INDEX  # prompt
    labels[1, :] = IGNORE_INDEX  # a row with no counted token
    labels[1, 8] = input_ids[1, 8]
    labels[2, :2] = IGNORE_INDEX
    labels[2, 7:] = IGNORE_INDEX
    return input_ids, attention_mask, labels


def test_answer_position_mask_marks_the_position_before_each_counted_token():
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6], [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX]])
    assert answer_position_mask(labels).tolist() == [[False, True, True, False], [True, False, False, False]]


def test_lm_head_sees_only_answer_positions_and_logits_match_the_full_forward(make_tiny_llama):
    model = make_tiny_llama()
    input_ids, attention_mask, labels = _batch(model.config.vocab_size)
    head_inputs: list[tuple[int, ...]] = []
    probe = model.get_output_embeddings().register_forward_hook(lambda m, a, o: head_inputs.append(tuple(a[0].shape)))
    with torch.no_grad():
        selected = forward_answer_tokens(model, input_ids, attention_mask, labels)
        full = AnswerTokens.from_logits(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    probe.remove()

    counted = int(labels[:, 1:].ne(IGNORE_INDEX).sum())
    assert counted == 5 + 1 + 5 and selected.num_tokens == counted
    assert head_inputs == [(counted, model.config.hidden_size), (3, 9, model.config.hidden_size)]
    assert torch.allclose(selected.logits, full.logits, atol=1e-5)
    assert torch.equal(selected.targets, full.targets) and selected.rows.tolist() == [0] * 5 + [1] + [2] * 5
    assert not model.get_output_embeddings()._forward_pre_hooks  # the hook is gone after the forward


def test_losses_and_lora_gradients_match_the_full_forward(make_tiny_llama):
    model = get_peft_model(
        make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    input_ids, attention_mask, labels = _batch(model.config.vocab_size, seed=1)

    def losses_and_grads(answer_only: bool):
        model.zero_grad()
        if answer_only:
            answer = forward_answer_tokens(model, input_ids, attention_mask, labels)
        else:
            answer = AnswerTokens.from_logits(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
        terms = [nll_loss(answer), uniform_kl_loss(answer), sequence_log_probs(answer)[0].sum()]
        sum(terms).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        return [t.item() for t in terms], grads

    selected_terms, selected_grads = losses_and_grads(answer_only=True)
    full_terms, full_grads = losses_and_grads(answer_only=False)
    assert selected_terms == pytest.approx(full_terms, rel=1e-5)
    assert len(selected_grads) == 4 * 2 * 2 and any(g.abs().sum() > 0 for g in selected_grads)
    for selected, full in zip(selected_grads, full_grads, strict=True):
        assert torch.allclose(selected, full, rtol=1e-3, atol=1e-5)  # float32 summation order


def test_split_by_groups_equals_each_group_alone(make_tiny_llama):
    model = make_tiny_llama()
    input_ids, attention_mask, labels = _batch(model.config.vocab_size, seed=2)
    with torch.no_grad():
        whole = forward_answer_tokens(model, input_ids, attention_mask, labels)
        first, second = whole.split([2, 1])
        alone = forward_answer_tokens(model, input_ids[2:], attention_mask[2:], labels[2:])
    assert (first.num_rows, second.num_rows) == (2, 1)
    assert first.rows.tolist() == [0] * 5 + [1] and second.rows.tolist() == [0] * 5
    assert torch.allclose(second.logits, alone.logits, atol=1e-5) and torch.equal(second.targets, alone.targets)
    log_probs, lengths = sequence_log_probs(first)
    assert lengths.tolist() == [5, 1] and log_probs.shape == (2,)


def test_model_without_output_embeddings_falls_back_to_selecting_full_logits(make_tiny_llama):
    model = make_tiny_llama()
    input_ids, attention_mask, labels = _batch(model.config.vocab_size, seed=3)
    model.get_output_embeddings = lambda: None  # e.g. a head applied as a function of the embedding matrix
    with torch.no_grad():
        selected = forward_answer_tokens(model, input_ids, attention_mask, labels)
        full = AnswerTokens.from_logits(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    assert torch.allclose(selected.logits, full.logits, atol=1e-6) and selected.num_tokens == 11


def test_mismatched_logits_and_labels_are_refused():
    labels = torch.tensor([[IGNORE_INDEX, 4, 5]])
    with pytest.raises(ValueError, match="logits for 3 positions but the labels count 2 tokens"):
        AnswerTokens.from_selected_logits(torch.zeros(3, 7), labels, answer_position_mask(labels))

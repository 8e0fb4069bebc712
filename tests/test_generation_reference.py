"""`ULDModel.generate` against decoding computed with the model's own `forward` over the whole sequence.

The reference never uses a KV cache and never calls `generate`: each step runs `ULDModel.forward` on the full
sequence so far (left padding handled with the usual position ids), so a cache that drifts between the two stacks,
or a cache keyword one stack does not receive, shows up as a mismatch. Checked on tiny random models of every
architecture the library claims, plus a 4-bit Llama, for greedy (batch 1 and left-padded batch), beam search and
seeded sampling, and the two stacks' cache lengths after generation; and the batched answer probabilities TOFU's
evaluation scores against each pair's own unpadded forward pass.
"""

from __future__ import annotations

import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from unlearn_peft import UnlearnTrainer
from unlearn_peft.cache import ULDCache
from unlearn_peft.data import QUESTION_ANSWER, render_row, tokenize_row
from unlearn_peft.evaluation import answer_probabilities, answer_probability
from unlearn_peft.modeling import ULDModel
from unlearn_peft.testing import tiny_random_causal_lm

from .conftest import qa_only, tiny_uld_args

ARCHITECTURES = [
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi",
    "phi3",
    "gpt_neox",
    "opt",
    "falcon",
    "olmo2",
    "granite",
    "gpt2",
]
NEW_TOKENS = 5


def _train_adapter(base_dir, tokenizer, tofu_forget, tofu_retain, output_dir) -> None:
    args = tiny_uld_args(output_dir, max_steps=3, learning_rate=2e-2, max_length=64)
    trainer = UnlearnTrainer(
        str(base_dir),
        args=args,
        forget_dataset=qa_only(tofu_forget[:4]),
        retain_dataset=qa_only(tofu_retain[:4]),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(output_dir))


@pytest.fixture(scope="module", params=[*ARCHITECTURES, "llama-4bit"])
def uld_model(request, tmp_path_factory, tokenizer, tofu_forget, tofu_retain) -> ULDModel:
    model_type = request.param.removesuffix("-4bit")
    root = tmp_path_factory.mktemp(request.param)
    # bitsandbytes' CPU inference kernel for AVX512-BF16 CPUs needs in-features that are multiples of its 64-value
    # blocks (hidden size 32 crashes there, and runs elsewhere); 64 runs on both kinds of CPU.
    hidden_size = 64 if request.param.endswith("-4bit") else 32
    tiny_random_causal_lm(tokenizer, model_type, hidden_size=hidden_size).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    _train_adapter(root / "base", tokenizer, tofu_forget, tofu_retain, root / "adapter")
    if request.param.endswith("-4bit"):
        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
        base = AutoModelForCausalLM.from_pretrained(root / "base", quantization_config=quantization)
        model = ULDModel.from_pretrained(root / "adapter", base_model=base, merge_assistant=False)
    else:
        model = ULDModel.from_pretrained(root / "adapter")
    # Never stop early: every row generates NEW_TOKENS tokens, so each step has a reference to compare with.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


@pytest.fixture()
def left_padded(tokenizer):
    return tokenizer(
        ["Hello there, how are", "What is the capital of France?"],
        return_tensors="pt",
        padding=True,
        padding_side="left",
    )


@torch.no_grad()
def reference_logits(model: ULDModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token logits of the whole sequence through `forward`, no cache; left padding via position ids."""
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return output.logits[:, -1, :].float()


def _grow(input_ids, attention_mask, tokens):
    return torch.cat([input_ids, tokens[:, None]], dim=-1), torch.cat(
        [attention_mask, torch.ones_like(tokens)[:, None]], dim=-1
    )


def _generate(model, inputs, **kwargs):
    return model.generate(
        **inputs, max_new_tokens=NEW_TOKENS, return_dict_in_generate=True, output_logits=True, **kwargs
    )


def _cache_of(output) -> ULDCache:
    cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
    assert isinstance(cache, ULDCache), f"generate returned {type(cache).__name__}, not the ULDCache"
    return cache


def logit_tolerance(model: ULDModel) -> float:
    """1e-4; 1e-3 for a 4-bit base on a CPU with AVX512-BF16, where bitsandbytes repacks the weights for a kernel
    that sums a one-token step and a whole sequence in different orders (differences up to 2e-4 seen). A wrong
    cache, position or filter moves logits by far more than either."""
    if getattr(model.target, "is_loaded_in_4bit", False) and has_avx512bf16():
        return 1e-3
    return 1e-4


def _assert_steps_match_forward(model, inputs, output) -> list[torch.Tensor]:
    """Every step's logits from generate equal forward over the generated prefix; returns the reference logits."""
    prompt_length = inputs["input_ids"].shape[1]
    references = []
    for step in range(NEW_TOKENS):
        prefix = output.sequences[:, : prompt_length + step]
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(prefix[:, prompt_length:])], dim=-1)
        expected = reference_logits(model, prefix, mask)
        tolerance = logit_tolerance(model)
        torch.testing.assert_close(output.logits[step].float(), expected, rtol=tolerance, atol=tolerance)
        references.append(expected)
    return references


@pytest.mark.parametrize("batch", ["single", "left-padded"])
def test_greedy_equals_forward_decoding(uld_model, tokenizer, left_padded, batch):
    inputs = (
        left_padded if batch == "left-padded" else tokenizer(["What is the capital of France?"], return_tensors="pt")
    )
    output = _generate(uld_model, inputs, do_sample=False)
    references = _assert_steps_match_forward(uld_model, inputs, output)
    prompt_length = inputs["input_ids"].shape[1]
    for step, expected in enumerate(references):
        assert output.sequences[:, prompt_length + step].tolist() == expected.argmax(-1).tolist()
    cache = _cache_of(output)
    total = output.sequences.shape[1] - 1  # the last token is sampled, never encoded
    assert cache.get_seq_length() == cache.assistant_cache.get_seq_length() == total


def test_left_padded_rows_equal_the_same_prompts_alone(uld_model, tokenizer, left_padded):
    batched = _generate(uld_model, left_padded, do_sample=False).sequences[:, -NEW_TOKENS:]
    for row, prompt in enumerate(["Hello there, how are", "What is the capital of France?"]):
        alone = _generate(uld_model, tokenizer([prompt], return_tensors="pt"), do_sample=False)
        assert alone.sequences[0, -NEW_TOKENS:].tolist() == batched[row].tolist()


def test_seeded_sampling_equals_forward_sampling(uld_model, left_padded):
    torch.manual_seed(1234)
    output = _generate(uld_model, left_padded, do_sample=True, top_k=0, top_p=1.0, temperature=1.0)
    _assert_steps_match_forward(uld_model, left_padded, output)
    torch.manual_seed(1234)
    input_ids, attention_mask = left_padded["input_ids"], left_padded["attention_mask"]
    for _ in range(NEW_TOKENS):
        probabilities = torch.softmax(reference_logits(uld_model, input_ids, attention_mask), dim=-1)
        input_ids, attention_mask = _grow(input_ids, attention_mask, torch.multinomial(probabilities, 1).squeeze(1))
    assert output.sequences.tolist() == input_ids.tolist()


def test_beam_search_equals_forward_beam_search(uld_model, tokenizer):
    num_beams = 3
    inputs = tokenizer(["The capital of France is"], return_tensors="pt")
    output = uld_model.generate(
        **inputs,
        max_new_tokens=NEW_TOKENS,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        length_penalty=0.0,
        return_dict_in_generate=True,
        output_scores=True,
    )
    # Reference beam search: all beams extend together, no end-of-sequence, the top `num_beams` continuations of
    # (beam score + next-token log-probability) survive each step.
    sequences = inputs["input_ids"].repeat(num_beams, 1)
    masks = torch.ones_like(sequences)
    scores = torch.tensor([0.0] + [float("-inf")] * (num_beams - 1))
    for _ in range(NEW_TOKENS):
        log_probs = torch.log_softmax(reference_logits(uld_model, sequences, masks), dim=-1)
        candidates = (scores[:, None] + log_probs).flatten()
        scores, flat = candidates.topk(num_beams)
        beam, token = flat // log_probs.shape[-1], flat % log_probs.shape[-1]
        sequences, masks = _grow(sequences[beam], masks[beam], token)
    assert output.sequences.tolist() == sequences.tolist()
    tolerance = logit_tolerance(uld_model)
    torch.testing.assert_close(output.sequences_scores, scores, rtol=tolerance, atol=tolerance)


def test_assistant_head_shortcut_only_where_logits_are_plain_head_outputs(uld_model):
    # Gemma-2 soft-caps and Granite scales its logits after the head: the assistant must run its own full forward.
    post_processed = uld_model.config.model_type in ("gemma2", "granite")
    assert uld_model.plain_assistant_head is not post_processed


@torch.no_grad()
def test_forward_is_target_minus_filtered_assistant_of_the_stacks_own_logits(uld_model, tokenizer, left_padded):
    """`forward` against the formula applied by hand to each stack's own full forward (post-processing included),
    with the special tokens exempt, as the trainer records for a target that has not memorised its forget rows."""
    special_ids = sorted(set(tokenizer.all_special_ids))
    assert uld_model.exempt_token_ids == special_ids
    target = uld_model.target(**left_padded).logits.float()
    assistant_log_probs = torch.log_softmax(uld_model.assistant(**left_padded).logits.float(), dim=-1)
    target_probs = torch.softmax(target, dim=-1)
    plausible = target_probs >= uld_model.plausibility_threshold * target_probs.max(-1, keepdim=True).values
    top = target.topk(uld_model.min_tokens_to_keep, dim=-1).indices
    plausible = plausible.scatter(-1, top, True)
    centre = (assistant_log_probs * plausible).sum(-1, keepdim=True) / plausible.sum(-1, keepdim=True)
    subtracted = torch.where(plausible, assistant_log_probs - centre, 0.0)
    assert plausible[..., special_ids].any()  # a random target: the exemption matters here
    subtracted[..., special_ids] = 0.0
    expected = target - uld_model.assistant_weight * subtracted
    actual = uld_model(**left_padded).logits.float()
    tolerance = logit_tolerance(uld_model)
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


def test_batched_answer_probabilities_equal_each_pair_scored_alone(uld_model, tokenizer, tofu_forget):
    """Right-padded, length-sorted batches give each pair the probability of its own unpadded forward pass."""
    pairs = [(row["question"], answer) for row in tofu_forget[:3] for answer in row["perturbed_answer"][:2]]
    pairs.insert(2, (tofu_forget[3]["question"], "No."))  # a much shorter answer shares a batch with long ones
    expected = []
    with torch.no_grad():
        for question, answer in pairs:
            rendered = render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "test", 0)
            prompt_ids, answer_ids = tokenize_row(rendered, tokenizer)
            logits = uld_model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0].double()
            answer_logits = logits[len(prompt_ids) - 1 : -1]
            token_log_probs = answer_logits[range(len(answer_ids)), answer_ids] - answer_logits.logsumexp(-1)
            expected.append(float(token_log_probs.mean().exp()))
    assert answer_probabilities(uld_model, tokenizer, pairs, batch_size=3) == pytest.approx(expected, rel=1e-4)
    assert answer_probability(uld_model, tokenizer, *pairs[2]) == pytest.approx(expected[2], rel=1e-4)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        answer_probabilities(uld_model, tokenizer, pairs, batch_size=0)

"""ULDModel on a tiny random Llama: exactness, caches, generation modes, pipelines, saving and refusals."""

import json
import logging
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, pipeline

from unlearn_peft import SIDECAR_NAME, UnlearnTrainer
from unlearn_peft.cache import ULDCache
from unlearn_peft.logit_difference import DEFAULT_MIN_TOKENS_TO_KEEP, uld_logits
from unlearn_peft.modeling import ULDModel
from unlearn_peft.sidecar import LEGACY_SIDECAR_NAME

from .conftest import qa_only, tiny_uld_args


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, make_tiny_llama, tokenizer, tofu_forget, tofu_retain):
    """A tiny base checkpoint and a ULD adapter trained on it (non-zero LoRA, so the assistant matters)."""
    root = tmp_path_factory.mktemp("uld")
    base_dir, adapter_dir = root / "base", root / "adapter"
    make_tiny_llama(num_layers=4).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    # Subtracting on every token, as the paper: the tests below compare with `uld_logits` without an exemption, and
    # `test_exempt_token_ids_from_the_sidecar_in_forward_and_generation` turns it on. (A random target has not
    # memorised its forget rows, so the default would exempt the special tokens: `tests/test_trainer.py`.)
    args = tiny_uld_args(root / "out", exempt_special_tokens=False)
    trainer = UnlearnTrainer(
        str(base_dir),
        args=args,
        forget_dataset=qa_only(tofu_forget[:4]),
        retain_dataset=qa_only(tofu_retain[:4]),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(adapter_dir))
    return base_dir, adapter_dir


@pytest.fixture()
def prompts(tokenizer):
    return tokenizer(
        ["Hello there, how", "What is the capital of"], return_tensors="pt", padding=True, padding_side="left"
    )


def _base(base_dir):
    return AutoModelForCausalLM.from_pretrained(base_dir).eval()


def test_zero_weight_reproduces_the_base_exactly(tiny_adapter, prompts):
    base_dir, adapter_dir = tiny_adapter
    model = ULDModel.from_pretrained(adapter_dir, assistant_weight=0.0)
    with torch.no_grad():
        assert torch.equal(model(**prompts).logits, _base(base_dir)(**prompts).logits)


def test_sidecar_values_and_overrides(tiny_adapter):
    _, adapter_dir = tiny_adapter
    model = ULDModel.from_pretrained(adapter_dir)
    assert (model.assistant_weight, model.plausibility_threshold, model.min_tokens_to_keep) == (
        0.6,
        0.01,
        DEFAULT_MIN_TOKENS_TO_KEEP,
    )
    model = ULDModel.from_pretrained(
        adapter_dir, assistant_weight=0.5, plausibility_threshold=0.0, min_tokens_to_keep=3
    )
    assert (model.assistant_weight, model.plausibility_threshold, model.min_tokens_to_keep) == (0.5, 0.0, 3)
    assert model.config.num_hidden_layers == 4 and model.config.vocab_size == model.target.config.vocab_size


def assert_saved_with_the_option_on_and_generates_as_forward_decodes(
    model: ULDModel, option: str, directory, prompts, value: bool | float | list[int] = True
) -> None:
    """`model` (with the sidecar `option` at `value`) saves and reloads it so, and 6 greedy tokens from `generate`
    (with its caches) equal argmax decoding with `forward` over the whole sequence, on the second (left-padded)
    prompt without its padding."""
    model.save_pretrained(directory)
    saved = json.loads((directory / SIDECAR_NAME).read_text())[option]
    assert saved == value and type(saved) is type(value)
    reloaded = ULDModel.from_pretrained(directory)
    assert getattr(reloaded, option) == value
    input_ids = prompts["input_ids"][1:, :][:, prompts["attention_mask"][1].bool()]
    generated = reloaded.generate(input_ids, max_new_tokens=6, do_sample=False)
    decoded = input_ids
    with torch.no_grad():
        for _ in range(6):
            decoded = torch.cat([decoded, reloaded(decoded).logits[:, -1:].argmax(-1)], dim=-1)
    assert torch.equal(generated, decoded)


def older_adapter(adapter_dir, directory, schema_version: int, *fields_added_since: str):
    """A copy of the adapter as an older version wrote it: its sidecar without `fields_added_since` and
    `exempt_token_ids` (the latest field; each checked to hold today's default first) and with `schema_version`."""
    shutil.copytree(adapter_dir, directory)
    sidecar = json.loads((directory / SIDECAR_NAME).read_text())
    assert sidecar["schema_version"] == 6
    defaults = {"min_tokens_to_keep": DEFAULT_MIN_TOKENS_TO_KEEP, "weight_by_assistant_mass": False}
    defaults["subtraction_margin"] = 0.0
    defaults["exempt_token_ids"] = []
    for name in (*fields_added_since, "exempt_token_ids"):
        assert sidecar.pop(name) == defaults.get(name, False)
    sidecar["schema_version"] = schema_version
    (directory / SIDECAR_NAME).write_text(json.dumps(sidecar))
    return directory


def test_version_1_sidecar_loads_with_the_documented_floor(tiny_adapter, tmp_path):
    _, adapter_dir = tiny_adapter
    fields = ("min_tokens_to_keep", "weight_by_assistant_mass", "one_sided_subtraction", "subtraction_margin")
    old = older_adapter(adapter_dir, tmp_path / "v1", 1, *fields)
    assert ULDModel.from_pretrained(old).min_tokens_to_keep == DEFAULT_MIN_TOKENS_TO_KEEP


def test_mass_weighting_from_the_sidecar_in_forward_and_generation(tiny_adapter, tmp_path, prompts):
    """Off by default and for version-2 sidecars; on by override or sidecar, where forward equals the formula applied
    to the target's and the assistant's own logits, and greedy generation equals decoding with full forwards."""
    _, adapter_dir = tiny_adapter
    assert ULDModel.from_pretrained(adapter_dir).weight_by_assistant_mass is False
    added_since_2 = ("weight_by_assistant_mass", "one_sided_subtraction", "subtraction_margin")
    old = older_adapter(adapter_dir, tmp_path / "v2", 2, *added_since_2)
    assert ULDModel.from_pretrained(old).weight_by_assistant_mass is False

    # A random model's next-token distribution is nearly flat: a high τ and a low floor keep the plausible set small.
    model = ULDModel.from_pretrained(
        adapter_dir, weight_by_assistant_mass=True, plausibility_threshold=0.95, min_tokens_to_keep=3
    )
    with torch.no_grad():
        target = model.target(**prompts).logits
        assistant = model.assistant(**prompts).logits
        expected = uld_logits(target, assistant, model.assistant_weight, 0.95, 3, weight_by_assistant_mass=True)
        unweighted = uld_logits(target, assistant, model.assistant_weight, 0.95, 3)
        logits = model(**prompts).logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(expected, unweighted, atol=1e-3)  # the weighting changes something here

    assert_saved_with_the_option_on_and_generates_as_forward_decodes(
        model, "weight_by_assistant_mass", tmp_path / "weighted", prompts
    )


def test_one_sided_subtraction_from_the_sidecar_in_forward_and_generation(tiny_adapter, tmp_path, prompts):
    """Off by default and for version-3 sidecars; on by override or sidecar, where forward equals the formula applied
    to the target's and the assistant's own logits, and greedy generation equals decoding with full forwards."""
    _, adapter_dir = tiny_adapter
    assert ULDModel.from_pretrained(adapter_dir).one_sided_subtraction is False
    old = older_adapter(adapter_dir, tmp_path / "v3", 3, "one_sided_subtraction", "subtraction_margin")
    assert ULDModel.from_pretrained(old).one_sided_subtraction is False

    model = ULDModel.from_pretrained(
        adapter_dir, one_sided_subtraction=True, plausibility_threshold=0.95, min_tokens_to_keep=3
    )
    with torch.no_grad():
        target = model.target(**prompts).logits
        assistant = model.assistant(**prompts).logits
        log_probs = torch.log_softmax(assistant.double(), dim=-1)
        mask = target.double() >= torch.minimum(
            target.double().amax(-1, keepdim=True) + torch.log(torch.tensor(0.95, dtype=torch.float64)),
            target.double().topk(3, dim=-1).values[..., -1:],
        )
        centred = log_probs - (log_probs * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
        expected = target.double() - model.assistant_weight * centred.clamp(min=0) * mask
        two_sided = target.double() - model.assistant_weight * centred * mask
        logits = model(**prompts).logits
    torch.testing.assert_close(logits.double(), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(expected, two_sided, atol=1e-3)  # the clip changes something here

    assert_saved_with_the_option_on_and_generates_as_forward_decodes(
        model, "one_sided_subtraction", tmp_path / "one_sided", prompts
    )


def test_subtraction_margin_from_the_sidecar_in_forward_and_generation(tiny_adapter, tmp_path, prompts):
    """0 by default and for version-4 sidecars; set by override or sidecar, where forward equals
    `z_T − α · max(0, f − δ)` from the target's and the assistant's own logits, and greedy generation equals
    decoding with full forwards."""
    _, adapter_dir = tiny_adapter
    assert ULDModel.from_pretrained(adapter_dir).subtraction_margin == 0.0
    old = older_adapter(adapter_dir, tmp_path / "v4", 4, "subtraction_margin")
    assert ULDModel.from_pretrained(old).subtraction_margin == 0.0

    settings = {"one_sided_subtraction": True, "plausibility_threshold": 0.95, "min_tokens_to_keep": 3}
    model = ULDModel.from_pretrained(adapter_dir, subtraction_margin=0.02, **settings)
    with torch.no_grad():
        target = model.target(**prompts).logits.double()
        log_probs = torch.log_softmax(model.assistant(**prompts).logits.double(), dim=-1)
        top = target.topk(3, dim=-1).values
        mask = target >= torch.minimum(top[..., :1] + math.log(0.95), top[..., -1:])
        centred = log_probs - (log_probs * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
        expected = target - model.assistant_weight * (centred - 0.02).clamp(min=0) * mask
        without_margin = target - model.assistant_weight * centred.clamp(min=0) * mask
        logits = model(**prompts).logits
    torch.testing.assert_close(logits.double(), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(expected, without_margin, atol=1e-3)  # the margin changes something here

    assert_saved_with_the_option_on_and_generates_as_forward_decodes(
        model, "subtraction_margin", tmp_path / "margin", prompts, value=0.02
    )
    with pytest.raises(ValueError, match=r"subtraction_margin=2.0 must be ≥ 0 and needs one_sided_subtraction=True"):
        ULDModel.from_pretrained(adapter_dir, subtraction_margin=2.0)


def test_exempt_token_ids_from_the_sidecar_in_forward_and_generation(tiny_adapter, tmp_path, prompts, tokenizer):
    """None in an adapter trained with `exempt_special_tokens=False` and in version-5 sidecars; set by override or
    sidecar, where forward equals `z_T − α · f`
    from the target's and the assistant's own logits with `f` zero on those tokens, and greedy generation equals
    decoding with full forwards. Ids outside the vocabulary are refused."""
    _, adapter_dir = tiny_adapter
    assert ULDModel.from_pretrained(adapter_dir).exempt_token_ids == []
    assert ULDModel.from_pretrained(older_adapter(adapter_dir, tmp_path / "v5", 5)).exempt_token_ids == []

    settings = {"plausibility_threshold": 0.95, "min_tokens_to_keep": 3}
    with torch.no_grad():
        plain = ULDModel.from_pretrained(adapter_dir, exempt_token_ids=[], **settings)
        target = plain.target(**prompts).logits.double()
        log_probs = torch.log_softmax(plain.assistant(**prompts).logits.double(), dim=-1)
    # The target's top tokens at the last position of each prompt: plausible there, so exempting them matters.
    exempt = sorted(set(target[:, -1].argmax(-1).tolist()))
    model = ULDModel.from_pretrained(adapter_dir, exempt_token_ids=exempt, **settings)
    top = target.topk(3, dim=-1).values
    mask = target >= torch.minimum(top[..., :1] + math.log(0.95), top[..., -1:])
    centred = log_probs - (log_probs * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
    subtracted = centred * mask
    expected_without = target - model.assistant_weight * subtracted
    subtracted[..., exempt] = 0
    expected = target - model.assistant_weight * subtracted
    with torch.no_grad():
        logits = model(**prompts).logits
    torch.testing.assert_close(logits.double(), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(expected, expected_without, atol=1e-3)  # the exemption changes something here

    assert_saved_with_the_option_on_and_generates_as_forward_decodes(
        model, "exempt_token_ids", tmp_path / "exempt", prompts, value=exempt
    )
    vocab_size = len(tokenizer)
    with pytest.raises(ValueError, match=rf"exempt_token_ids \[{vocab_size}\] are outside the target's vocabulary"):
        ULDModel.from_pretrained(adapter_dir, exempt_token_ids=[0, vocab_size])


def test_adapter_saved_under_the_legacy_sidecar_name_loads_and_is_saved_under_the_new_one(
    tiny_adapter, tmp_path, prompts
):
    base_dir, adapter_dir = tiny_adapter
    assert SIDECAR_NAME == "unlearn_sidecar.json" and (adapter_dir / SIDECAR_NAME).is_file()
    old = tmp_path / "legacy"
    shutil.copytree(adapter_dir, old)
    (old / SIDECAR_NAME).rename(old / LEGACY_SIDECAR_NAME)
    current, legacy = ULDModel.from_pretrained(adapter_dir), ULDModel.from_pretrained(old)
    assert legacy.sidecar == current.sidecar
    with torch.no_grad():
        assert torch.equal(legacy(**prompts).logits, current(**prompts).logits)
    resaved = tmp_path / "resaved"
    legacy.save_pretrained(resaved)
    assert (resaved / SIDECAR_NAME).is_file() and not (resaved / LEGACY_SIDECAR_NAME).exists()


def test_without_filter_logits_are_linear_in_alpha(tiny_adapter, prompts):
    base_dir, adapter_dir = tiny_adapter
    with torch.no_grad():
        base_logits = _base(base_dir)(**prompts).logits
        implied = []
        for alpha in (0.5, 2.0):
            model = ULDModel.from_pretrained(adapter_dir, assistant_weight=alpha, plausibility_threshold=0.0)
            implied.append((base_logits - model(**prompts).logits) / alpha)
    assert implied[0].abs().max() > 1e-2  # the assistant contributes
    torch.testing.assert_close(implied[0], implied[1], rtol=1e-4, atol=1e-4)


def test_merged_and_shared_modes_agree_and_shared_copies_nothing(tiny_adapter, prompts):
    _, adapter_dir = tiny_adapter
    merged = ULDModel.from_pretrained(adapter_dir)
    shared = ULDModel.from_pretrained(adapter_dir, merge_assistant=False)
    with torch.no_grad():
        torch.testing.assert_close(shared(**prompts).logits, merged(**prompts).logits, rtol=0, atol=1e-5)
    target_pointers = {p.data_ptr() for p in shared.target.parameters()}
    shared_base = [p for n, p in shared.assistant.named_parameters() if "lora_" not in n]
    assert all(p.data_ptr() in target_pointers for p in shared_base)
    merged_layer = merged.assistant.model.layers[0].self_attn.q_proj.weight
    assert merged_layer.data_ptr() not in {p.data_ptr() for p in merged.target.parameters()}
    assert merged.assistant.lm_head.weight.data_ptr() == merged.target.lm_head.weight.data_ptr()
    # The LoRA is live only in the assistant: the target's forward is the plain base.
    assert type(shared.target.model.layers[0].self_attn.q_proj).__name__ == "Linear"


def test_generation_encodes_the_prompt_once_per_stack(tiny_adapter, prompts, tokenizer):
    # Correctness of cached generation against forward-based decoding: tests/test_generation_reference.py.
    _, adapter_dir = tiny_adapter
    model = ULDModel.from_pretrained(adapter_dir)
    lengths = {"target": [], "assistant": []}
    model.target.model.register_forward_pre_hook(
        lambda _, args, kwargs: lengths["target"].append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    model.assistant.model.register_forward_pre_hook(
        lambda _, args, kwargs: lengths["assistant"].append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    cached = model.generate(**prompts, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    prompt_length = prompts["input_ids"].shape[1]
    assert lengths["target"] == lengths["assistant"] == [prompt_length] + [1] * 5
    assert cached.shape == (2, prompt_length + 6)


def test_beam_search_sampling_and_pipeline_run(tiny_adapter, prompts, tokenizer):
    _, adapter_dir = tiny_adapter
    model = ULDModel.from_pretrained(adapter_dir)
    beams = model.generate(
        **prompts, max_new_tokens=4, num_beams=3, num_return_sequences=2, pad_token_id=tokenizer.pad_token_id
    )
    assert beams.shape == (4, prompts["input_ids"].shape[1] + 4)
    torch.manual_seed(0)
    sampled = model.generate(
        **prompts, max_new_tokens=4, do_sample=True, top_k=20, pad_token_id=tokenizer.pad_token_id
    )
    assert sampled.shape == (2, prompts["input_ids"].shape[1] + 4)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    finally:
        transformers_logger.removeHandler(handler)
    assert not [r.getMessage()[:120] for r in records if "not supported" in r.getMessage()]
    output = generator("The capital of France is", max_new_tokens=4, do_sample=False)
    assert output[0]["generated_text"].startswith("The capital of France is")
    rebuilt = AutoModelForCausalLM.from_config(model.target.config)  # the registration changes no real model's class
    assert type(rebuilt) is type(model.target)


def test_uld_cache_moves_both_stacks_together():
    cache = ULDCache()
    key = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    cache.update(key, key, layer_idx=0)
    cache.assistant_cache.update(key + 100, key + 100, layer_idx=0)
    cache.reorder_cache(torch.tensor([1, 0]))
    assert torch.equal(cache.layers[0].keys[0], key[1]) and torch.equal(
        cache.assistant_cache.layers[0].keys[0], key[1] + 100
    )
    cache.crop(-1)
    assert cache.get_seq_length() == cache.assistant_cache.get_seq_length() == 2


def test_lm_eval_harness_scores_continuations_with_uld_logits(tiny_adapter, tokenizer):
    huggingface = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    _, adapter_dir = tiny_adapter
    model = ULDModel.from_pretrained(adapter_dir)
    requests = [("The capital of France is", " Paris"), ("Two plus two is", " four")]
    harness = huggingface.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2)
    scores = harness.loglikelihood(
        [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(requests)]
    )
    for (context, continuation), (log_likelihood, _) in zip(requests, scores, strict=True):
        context_ids, continuation_ids = tokenizer(context)["input_ids"], tokenizer(continuation)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([context_ids + continuation_ids])).logits[0, len(context_ids) - 1 : -1]
        expected = torch.log_softmax(logits.float(), dim=-1).gather(-1, torch.tensor(continuation_ids)[:, None]).sum()
        assert log_likelihood == pytest.approx(expected.item(), abs=1e-3)


def test_labels_give_the_causal_lm_loss_of_the_uld_logits(tiny_adapter, tokenizer):
    _, adapter_dir = tiny_adapter
    model = ULDModel.from_pretrained(adapter_dir)
    input_ids = torch.tensor([tokenizer("The capital of France is Paris")["input_ids"]])
    with torch.no_grad():
        output = model(input_ids, labels=input_ids)
    nll = -torch.log_softmax(output.logits[0, :-1], dim=-1).gather(-1, input_ids[0, 1:, None]).mean()
    torch.testing.assert_close(output.loss, nll, rtol=1e-4, atol=1e-4)


def test_to_dtype_and_save_pretrained_writes_adapter_not_merged_weights(tiny_adapter, tmp_path, prompts):
    _, adapter_dir = tiny_adapter
    model = ULDModel.from_pretrained(adapter_dir, assistant_weight=0.5)
    model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        SIDECAR_NAME,
    ]
    saved = load_file(tmp_path / "saved" / "adapter_model.safetensors")
    assert saved.keys() == load_file(adapter_dir / "adapter_model.safetensors").keys()
    assert json.loads((tmp_path / "saved" / SIDECAR_NAME).read_text())["assistant_weight"] == 0.5
    reloaded = ULDModel.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**prompts).logits, model(**prompts).logits)
    model.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.assistant.lm_head.weight.dtype == torch.bfloat16
    with torch.no_grad():
        assert model(**prompts).logits.dtype == torch.bfloat16


def test_mismatched_base_is_refused_with_both_fingerprints(tiny_adapter, make_tiny_llama):
    _, adapter_dir = tiny_adapter
    with pytest.raises(ValueError, match=r"different base model \(num_hidden_layers: adapter 4 vs base 6.*given base"):
        ULDModel.from_pretrained(adapter_dir, base_model=make_tiny_llama(num_layers=6))


def test_pickle_only_and_incomplete_adapters_are_refused(tiny_adapter, tmp_path):
    _, adapter_dir = tiny_adapter
    pickled = tmp_path / "pickled"
    shutil.copytree(adapter_dir, pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(ValueError, match=r"only as pickle \(.bin\)"):
        ULDModel.from_pretrained(pickled)
    no_sidecar = tmp_path / "no_sidecar"
    shutil.copytree(adapter_dir, no_sidecar)
    (no_sidecar / SIDECAR_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=f"has no {SIDECAR_NAME} \\(nor the legacy {LEGACY_SIDECAR_NAME}\\)"):
        ULDModel.from_pretrained(no_sidecar)

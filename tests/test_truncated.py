"""ULD loads only what the assistant runs (issue #17): the first K layers, from a path or the Hub's needed shards."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from unlearn_peft import ULDModel, UnlearnSidecar, UnlearnTrainer
from unlearn_peft.truncated import TruncatedModelSaveError, is_needed, is_truncated

from .conftest import qa_only, tiny_uld_args

NUM_LAYERS, K = 6, 2


@pytest.fixture
def sharded_checkpoint(make_tiny_llama, tokenizer, tmp_path):
    """A tiny 6-layer Llama saved in many small shards, so most shards hold only layers ≥ K."""
    directory = tmp_path / "tiny-sharded"
    make_tiny_llama(num_layers=NUM_LAYERS, seed=5).save_pretrained(directory, max_shard_size="100KB")
    tokenizer.save_pretrained(directory)
    return directory


def shard_names(directory) -> tuple[set[str], set[str]]:
    """(all shards, shards holding a tensor the K-layer assistant needs), from the index, by hand."""
    weight_map = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    needed = {shard for name, shard in weight_map.items() if ".layers." not in name or int(name.split(".")[2]) < K}
    return set(weight_map.values()), needed


def train(model, tokenizer, forget, retain, output_dir, **overrides) -> UnlearnTrainer:
    args = tiny_uld_args(output_dir, assistant_num_layers=K, max_steps=3, save_strategy="no", **overrides)
    trainer = UnlearnTrainer(
        model, args=args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    return trainer


def test_is_needed_reads_the_layer_index_of_each_naming():
    assert is_needed("model.embed_tokens.weight", 2) and is_needed("lm_head.weight", 2)
    assert is_needed("model.layers.1.mlp.up_proj.weight", 2) and not is_needed("model.layers.2.mlp.up_proj.weight", 2)
    assert not is_needed("transformer.h.12.attn.c_attn.weight", 4) and is_needed("transformer.h.3.attn.bias", 4)
    assert not is_needed("gpt_neox.layers.10.attention.dense.weight", 8)


def test_truncated_load_trains_the_same_adapter_as_the_full_model(
    sharded_checkpoint, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    forget, retain = qa_only(tofu_forget[:4]), qa_only(tofu_retain[:4])
    # Only the whole target can train the plausible-set retain term (skipped on a truncated load): off on both.
    off = {"plausible_retain_loss_weight": 0.0}
    truncated = train(str(sharded_checkpoint), tokenizer, forget, retain, tmp_path / "truncated", **off)
    full_model = AutoModelForCausalLM.from_pretrained(sharded_checkpoint)
    full = train(full_model, tokenizer, forget, retain, tmp_path / "full", **off)

    model = truncated.target_model
    assert is_truncated(model) and len(model.model.layers) == K  # layers K..N-1 were never built
    assert not is_truncated(full.target_model) and len(full.target_model.model.layers) == NUM_LAYERS
    expected = load_file(tmp_path / "full" / "adapter_model.safetensors")
    actual = load_file(tmp_path / "truncated" / "adapter_model.safetensors")
    assert expected.keys() == actual.keys() and expected
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key

    # The sidecar describes the full base, so the adapter loads on it.
    sidecar = UnlearnSidecar.load(tmp_path / "truncated")
    assert sidecar.base_model_fingerprint == UnlearnSidecar.load(tmp_path / "full").base_model_fingerprint
    assert sidecar.base_model_fingerprint["num_hidden_layers"] == NUM_LAYERS
    assert sidecar.base_model_name_or_path == str(sharded_checkpoint)
    unlearned = ULDModel.from_pretrained(tmp_path / "truncated")
    reference = ULDModel.from_pretrained(tmp_path / "full", base_model=full_model)
    inputs = tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(unlearned(**inputs).logits, reference(**inputs).logits, rtol=0, atol=0)


def test_a_truncated_model_is_never_saved_or_used_as_the_base(
    sharded_checkpoint, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    trainer = train(
        str(sharded_checkpoint), tokenizer, qa_only(tofu_forget[:2]), qa_only(tofu_retain[:2]), tmp_path / "a"
    )
    with pytest.raises(TruncatedModelSaveError, match=f"only the first {K} of {NUM_LAYERS} decoder layers"):
        trainer.target_model.save_pretrained(tmp_path / "base-copy")
    with pytest.raises(TruncatedModelSaveError):
        trainer.target_model.push_to_hub("me/base-copy")
    assert not (tmp_path / "base-copy").exists()
    with pytest.raises(ValueError, match=f"holds only the first {K} decoder layers"):
        ULDModel.from_pretrained(tmp_path / "a", base_model=trainer.target_model)


def test_full_load_on_request_and_for_baselines(sharded_checkpoint, tokenizer, tofu_forget, tofu_retain, tmp_path):
    forget, retain = qa_only(tofu_forget[:2]), qa_only(tofu_retain[:2])
    kept = train(str(sharded_checkpoint), tokenizer, forget, retain, tmp_path / "a", load_assistant_layers_only=False)
    assert not is_truncated(kept.target_model)
    npo = train(str(sharded_checkpoint), tokenizer, forget, retain, tmp_path / "b", method="npo")
    assert len(npo.target_model.model.layers) == NUM_LAYERS


def test_from_the_hub_only_the_needed_shards_are_downloaded(
    fake_hub, sharded_checkpoint, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    api = fake_hub.api()
    api.create_repo("test-user/tiny-sharded")
    api.upload_folder(repo_id="test-user/tiny-sharded", folder_path=sharded_checkpoint)
    all_shards, needed = shard_names(sharded_checkpoint)
    assert len(needed) < len(all_shards) - 1  # the fixture spreads the later layers over shards of their own

    trainer = train(
        "test-user/tiny-sharded", tokenizer, qa_only(tofu_forget[:2]), qa_only(tofu_retain[:2]), tmp_path / "hub"
    )
    requested = {path.rsplit("/", 1)[-1] for _, path in fake_hub.calls("GET", contains=".safetensors")}
    assert {name for name in requested if name.endswith(".safetensors")} == needed
    assert requested - needed == {"model.safetensors.index.json"}
    sidecar = UnlearnSidecar.load(tmp_path / "hub")
    assert sidecar.base_model_name_or_path == "test-user/tiny-sharded"
    assert sidecar.base_model_revision == fake_hub.api().model_info("test-user/tiny-sharded").sha
    assert sidecar.base_model_fingerprint["num_hidden_layers"] == NUM_LAYERS
    assert len(trainer.target_model.model.layers) == K


def test_activation_checkpointing_trains_the_same_adapter(
    sharded_checkpoint, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    """The 7B recipe's memory saver: recomputing the assistant's activations must not change what it learns."""
    forget, retain = qa_only(tofu_forget[:4]), qa_only(tofu_retain[:4])
    plain = train(str(sharded_checkpoint), tokenizer, forget, retain, tmp_path / "plain")
    checkpointed = train(
        str(sharded_checkpoint), tokenizer, forget, retain, tmp_path / "checkpointed", activation_checkpointing=True
    )
    assert checkpointed.model.is_activation_checkpointing and not plain.model.is_activation_checkpointing
    expected = load_file(tmp_path / "plain" / "adapter_model.safetensors")
    actual = load_file(tmp_path / "checkpointed" / "adapter_model.safetensors")
    assert expected.keys() == actual.keys() and expected
    assert any(tensor.abs().max() > 0 for key, tensor in expected.items() if "lora_B" in key)  # it trained
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def mapped_shards_while_converting(monkeypatch, load) -> set[str]:
    """The checkpoint files memory-mapped in this process while transformers converts the loaded tensors, read from
    /proc/self/maps (what the kernel counts in the RSS), not from which backend was asked for."""
    import transformers.modeling_utils

    seen: set[str] = set()
    convert = transformers.modeling_utils.convert_and_load_state_dict_in_model

    def convert_and_record(*args, **kwargs):
        with open("/proc/self/maps", encoding="utf-8") as maps:
            seen.update(line.split()[-1] for line in maps if line.rstrip().endswith(".safetensors"))
        return convert(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(transformers.modeling_utils, "convert_and_load_state_dict_in_model", convert_and_record)
        load()
    return seen


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
def test_a_converting_truncated_load_does_not_keep_the_checkpoint_mapped(monkeypatch, sharded_checkpoint):
    """Loaded in another dtype, the assistant's tensors are read one at a time, so the checkpoint's pages do not pile
    up beside the converted weights (the 0.5x goal of benchmarks/truncated_load.py); the weights are the same as a
    plain load's. In the stored dtype the mapped pages are the weights themselves, so the map is kept."""
    from unlearn_peft.loading import load_causal_lm

    def truncated(dtype: str):
        return lambda: loaded.setdefault(
            dtype,
            load_causal_lm(
                str(sharded_checkpoint), {"dtype": dtype}, only_assistant_layers=True, assistant_num_layers=K
            ),
        )

    loaded = {}  # the converting load first: tensors loaded in the stored dtype stay mapped as long as they live
    converting_mapped = mapped_shards_while_converting(monkeypatch, truncated("bfloat16"))
    plain_mapped = mapped_shards_while_converting(
        monkeypatch,
        lambda: loaded.setdefault("plain", AutoModelForCausalLM.from_pretrained(sharded_checkpoint, dtype="bfloat16")),
    )
    stored_dtype_mapped = mapped_shards_while_converting(monkeypatch, truncated("float32"))
    assert plain_mapped, "a plain from_pretrained maps its shards: without this the check below proves nothing"
    assert converting_mapped == set()
    assert stored_dtype_mapped  # float32 is the fixture's stored dtype: no conversion, the map is the weights
    plain_state = loaded["plain"].state_dict()
    truncated_state = loaded["bfloat16"].state_dict()
    assert truncated_state.keys() < plain_state.keys()
    for name, tensor in truncated_state.items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, plain_state[name]), name

"""Reliability (issue #9): resume equals an uninterrupted run, atomic saves, NaN guard, refused loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import load_file
from transformers import TrainerCallback

from unlearn_peft import SIDECAR_NAME, ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.sidecar import SIDECAR_SCHEMA_VERSION, UnlearnSidecar

from .conftest import qa_only

LORA = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj", "down_proj"])


class StopAfter(TrainerCallback):
    """Simulates an interruption: training stops after `step` optimiser steps (after that step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def make_trainer(model, tokenizer, forget, retain, output_dir: Path, callbacks=None, **config) -> UnlearnTrainer:
    settings = dict(
        output_dir=str(output_dir),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        save_strategy="steps",
        save_steps=3,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        max_length=96,
        seed=0,
        data_seed=0,
    )
    settings.update(config)
    return UnlearnTrainer(
        model,
        args=UnlearnConfig(**settings),
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=tokenizer,
        peft_config=LORA,
        callbacks=callbacks,
    )


@pytest.mark.parametrize(
    "method_config",
    [
        {"method": "uld", "assistant_num_layers": 2},
        {"method": "npo", "retain_loss": "nll", "precompute_reference_log_probs": True},
    ],
    ids=["uld", "npo-cached-reference"],
)
def test_resume_matches_uninterrupted_run_bitwise(
    method_config, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    """6 steps straight == 3 steps, stop, new process-like trainer resumed from checkpoint-3 (bitwise, CPU)."""
    forget, retain = tofu_forget[:8], qa_only(tofu_retain[:8])  # forget rows carry paraphrases (ULD augments them)

    straight = make_trainer(make_tiny_llama(seed=1), tokenizer, forget, retain, tmp_path / "straight", **method_config)
    straight.train()
    straight.save_model()

    interrupted_dir = tmp_path / "interrupted"
    first = make_trainer(
        make_tiny_llama(seed=1), tokenizer, forget, retain, interrupted_dir, [StopAfter(3)], **method_config
    )
    first.train()
    assert first.state.global_step == 3 and (interrupted_dir / "checkpoint-3").is_dir()
    # Another `seed` (data order stays fixed by data_seed): a fresh run from this trainer would end elsewhere, so
    # equality below holds only if the LoRA weights, optimizer, scheduler and RNG states come from the checkpoint.
    resumed = make_trainer(
        make_tiny_llama(seed=1), tokenizer, forget, retain, interrupted_dir, seed=123, **method_config
    )
    if method_config["method"] == "npo":  # the reference cache was rebuilt identically by the new trainer
        assert resumed.train_dataset.forget["reference_log_prob"] == first.train_dataset.forget["reference_log_prob"]
    resumed.train(resume_from_checkpoint=str(interrupted_dir / "checkpoint-3"))
    resumed.save_model()
    assert resumed.state.global_step == 6

    expected = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    actual = load_file(interrupted_dir / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    start = load_file(interrupted_dir / "checkpoint-3" / "adapter_model.safetensors")
    assert any(not torch.equal(start[key], actual[key]) for key in actual)  # the resumed run did train
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    # Resuming worked without Trainer's pickled arguments: none is written, the JSON copy is.
    assert not list(tmp_path.rglob("training_args.bin"))
    saved_args = json.loads((interrupted_dir / "checkpoint-3" / "training_args.json").read_text())
    assert saved_args["output_dir"] == str(interrupted_dir) and saved_args["method"] == method_config["method"]


def test_failed_save_model_leaves_previous_adapter_loadable(
    make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path, monkeypatch
):
    model = make_tiny_llama()
    output = tmp_path / "adapter"
    trainer = make_trainer(
        model,
        tokenizer,
        qa_only(tofu_forget[:4]),
        qa_only(tofu_retain[:4]),
        output,
        max_steps=2,
        save_strategy="no",
        assistant_num_layers=2,
    )
    trainer.train()
    trainer.save_model()
    before = {p.name: p.read_bytes() for p in output.iterdir() if p.is_file()}
    reference_logits = ULDModel.from_pretrained(output, base_model=model)(input_ids=torch.tensor([[1, 2, 3]])).logits

    trainer.args.max_steps = 4
    trainer.train()  # the adapter moves on, then saving it fails half-way (after the weights were written)

    def failing_sidecar_save(self, directory):
        raise OSError("No space left on device (injected)")

    monkeypatch.setattr(UnlearnSidecar, "save", failing_sidecar_save)
    with pytest.raises(OSError, match="injected"):
        trainer.save_model()
    after = {p.name: p.read_bytes() for p in output.iterdir() if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".adapter.saving-*"))  # no staging leftovers
    monkeypatch.undo()
    logits = ULDModel.from_pretrained(output, base_model=model)(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert torch.equal(logits, reference_logits)


def test_failed_uld_save_pretrained_leaves_previous_adapter(tiny_uld, tmp_path, monkeypatch):
    model, adapter_dir = tiny_uld
    target = tmp_path / "copy"
    model.save_pretrained(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    model.assistant_weight = 0.3

    import unlearn_peft.modeling as modeling

    def failing_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise RuntimeError("interrupted while writing weights (injected)")

    monkeypatch.setattr(modeling, "save_file", failing_save_file)
    with pytest.raises(RuntimeError, match="injected"):
        model.save_pretrained(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


@pytest.fixture
def tiny_uld(make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path):
    base = make_tiny_llama()
    output = tmp_path / "uld"
    trainer = make_trainer(
        base,
        tokenizer,
        qa_only(tofu_forget[:4]),
        qa_only(tofu_retain[:4]),
        output,
        max_steps=1,
        save_strategy="no",
        assistant_num_layers=2,
    )
    trainer.train()
    trainer.save_model()
    return ULDModel.from_pretrained(output, base_model=base), output


def test_non_finite_loss_stops_with_step_and_term_and_keeps_last_checkpoint(
    make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path, monkeypatch
):
    output = tmp_path / "nan"
    trainer = make_trainer(
        make_tiny_llama(),
        tokenizer,
        qa_only(tofu_forget[:8]),
        qa_only(tofu_retain[:8]),
        output,
        save_steps=2,
        assistant_num_layers=2,
    )
    method = trainer.unlearning_method
    original = method.retain_term

    def retain_term_nan_at_step_3(*args, **kwargs):
        value = original(*args, **kwargs)
        return value * float("nan") if trainer.state.global_step == 2 else value

    monkeypatch.setattr(method, "retain_term", retain_term_nan_at_step_3)
    with pytest.raises(FloatingPointError, match=r"at step 3 \(loss_forget=[0-9.]+, loss_retain=nan[,)]"):
        trainer.train()
    checkpoint = output / "checkpoint-2"
    weights = load_file(checkpoint / "adapter_model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    assert not (output / "checkpoint-3").exists() and not (output / "checkpoint-4").exists()
    assert UnlearnSidecar.load(checkpoint).training["global_step"] == 2


def test_refused_loads_each_have_a_clear_message(tiny_uld, make_tiny_llama, tmp_path):
    _, adapter_dir = tiny_uld
    base = make_tiny_llama()

    def variant(name: str) -> Path:
        directory = tmp_path / name
        shutil.copytree(adapter_dir, directory)
        return directory

    wrong_base = make_tiny_llama(num_layers=6)
    with pytest.raises(ValueError, match="different base model.*num_hidden_layers: adapter 4 vs base 6"):
        ULDModel.from_pretrained(adapter_dir, base_model=wrong_base)

    missing = variant("missing-sidecar")
    (missing / SIDECAR_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=f"has no {SIDECAR_NAME}"):
        ULDModel.from_pretrained(missing, base_model=base)

    corrupted = variant("corrupted")
    weights = corrupted / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupted or truncated"):
        ULDModel.from_pretrained(corrupted, base_model=base)
    garbage = variant("garbage")
    (garbage / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupted or truncated"):
        ULDModel.from_pretrained(garbage, base_model=base)

    newer = variant("newer-schema")
    data = json.loads((newer / SIDECAR_NAME).read_text())
    data["schema_version"] = SIDECAR_SCHEMA_VERSION + 1
    (newer / SIDECAR_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"schema_version={SIDECAR_SCHEMA_VERSION + 1} is not supported.*Upgrade"):
        ULDModel.from_pretrained(newer, base_model=base)

    pickled = variant("pickle-only")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(ValueError, match=r"only as pickle \(.bin\).*safetensors"):
        ULDModel.from_pretrained(pickled, base_model=base)

    broken_json = variant("broken-sidecar")
    (broken_json / SIDECAR_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="sidecar is corrupted"):
        ULDModel.from_pretrained(broken_json, base_model=base)

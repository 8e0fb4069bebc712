"""Hub publishing (issue #6): model cards, push_to_hub, and from_pretrained from the Hub, against a loopback Hub."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from peft import AutoPeftModelForCausalLM, LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearn_peft import SIDECAR_NAME, ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.cli import main as cli_main
from unlearn_peft.evaluation import evaluate_tofu
from unlearn_peft.hub import HubPushError, push_adapter
from unlearn_peft.model_card import render_model_card

from .conftest import qa_only

ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "unlearn_sidecar.json", "README.md"}
BASE_REPO = "test-user/tiny-base"


def front_matter(card_text: str) -> dict:
    """The card's YAML metadata, parsed and checked the way the Hub's validator does (ModelCard + model-index)."""
    assert card_text.startswith("---\n")
    metadata = yaml.safe_load(card_text.split("---\n")[1])
    card = ModelCard(card_text)  # raises on malformed metadata
    assert card.data.to_dict() == {key: value for key, value in metadata.items() if value is not None}
    if "model-index" in metadata:
        name, results = model_index_to_eval_results(metadata["model-index"])
        assert name and results
    return metadata


def directory_digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def small_args(output_dir: Path, **overrides) -> UnlearnConfig:
    settings = dict(
        output_dir=str(output_dir),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        max_length=96,
        seed=0,
        hub_model_id=None,
    )
    settings.update(overrides)
    return UnlearnConfig(**settings)


@pytest.fixture
def hub_base(fake_hub, make_tiny_llama, tokenizer, tmp_path):
    """A tiny random Llama published on the loopback Hub as `test-user/tiny-base`, then loaded back from it."""
    local = tmp_path / "tiny-base"
    make_tiny_llama(num_layers=4, seed=3).save_pretrained(local)
    tokenizer.save_pretrained(local)
    api = fake_hub.api()
    api.create_repo(BASE_REPO)
    api.upload_folder(repo_id=BASE_REPO, folder_path=local)
    return AutoModelForCausalLM.from_pretrained(BASE_REPO).eval()


def trained_adapter(model, tokenizer, tofu_forget, tofu_retain, output_dir: Path, **config) -> UnlearnTrainer:
    trainer = UnlearnTrainer(
        model,
        args=small_args(output_dir, **config),
        forget_dataset=qa_only(tofu_forget[:4]),
        retain_dataset=qa_only(tofu_retain[:4]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    trainer.save_model()
    return trainer


def test_uld_push_then_from_pretrained_in_clean_cache(
    fake_hub, hub_base, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    output = tmp_path / "uld"
    trainer = trained_adapter(
        hub_base,
        tokenizer,
        tofu_forget,
        tofu_retain,
        output,
        assistant_num_layers=2,
        hub_model_id="test-user/tiny-uld",
    )
    local_card = (output / "README.md").read_text()  # PEFT's generic card was replaced by ours
    assert "A **ULD unlearning adapter**" in local_card and "Model Card for Model ID" not in local_card
    url = trainer.push_to_hub(token=fake_hub.token)
    assert "test-user/tiny-uld" in url

    uploaded = fake_hub.files("test-user/tiny-uld")
    assert set(uploaded) == ADAPTER_FILES  # no training_args.bin, no checkpoints, no PEFT card
    metadata = front_matter(uploaded["README.md"].decode())
    assert metadata["base_model"] == BASE_REPO
    assert metadata["library_name"] == "unlearn-peft"
    assert metadata["pipeline_tag"] == "text-generation"
    assert {"unlearning", "uld", "lora", "unlearn-peft"} <= set(metadata["tags"])
    assert "model-index" not in metadata
    card = uploaded["README.md"].decode()
    assert 'ULDModel.from_pretrained("test-user/tiny-uld")' in card and "No evaluation was attached" in card
    assert "What is the full name" not in card  # dataset contents never reach the card

    local = ULDModel.from_pretrained(output, base_model=hub_base)
    shutil.rmtree(Path(fake_hub_cache()), ignore_errors=True)  # a fresh cache: everything comes over HTTP again
    downloads_before = len(fake_hub.calls("GET", contains="/resolve/"))
    remote = ULDModel.from_pretrained("test-user/tiny-uld")  # one line: base from the sidecar, via the Hub
    assert len(fake_hub.calls("GET", contains="/resolve/")) > downloads_before
    inputs = tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(remote(**inputs).logits, local(**inputs).logits, rtol=0, atol=1e-6)


def fake_hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def test_baseline_push_with_evaluation_loads_with_auto_peft(
    fake_hub, hub_base, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    output = tmp_path / "npo"
    trainer = trained_adapter(hub_base, tokenizer, tofu_forget, tofu_retain, output, method="npo")
    evaluation = evaluate_tofu(
        trainer.model, tokenizer, {"forget": tofu_forget[:2]}, model_name="tiny-npo", max_new_tokens=4
    )
    url = push_adapter(output, "test-user/tiny-npo", evaluation=evaluation, token=fake_hub.token)
    assert "test-user/tiny-npo" in url
    uploaded = fake_hub.files("test-user/tiny-npo")
    assert set(uploaded) == ADAPTER_FILES | {"eval_results.json"}
    metadata = front_matter(uploaded["README.md"].decode())
    assert metadata["library_name"] == "peft" and "npo" in metadata["tags"]
    _, results = model_index_to_eval_results(metadata["model-index"])
    by_metric = {result.metric_type: result.metric_value for result in results}
    assert by_metric["forget_probability"] == pytest.approx(evaluation["splits"]["forget"]["probability"], abs=1e-6)
    card = uploaded["README.md"].decode()
    assert "AutoPeftModelForCausalLM" in card and "TOFU forget_truth_ratio" in card
    assert json.loads(uploaded["eval_results.json"])["model_name"] == "tiny-npo"

    shutil.rmtree(Path(fake_hub_cache()), ignore_errors=True)
    remote = AutoPeftModelForCausalLM.from_pretrained("test-user/tiny-npo").eval()
    inputs = tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(remote(**inputs).logits, trainer.model(**inputs).logits, rtol=0, atol=1e-6)


def test_push_failures_raise_clearly_and_leave_local_adapter_intact(
    fake_hub, hub_base, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    output = tmp_path / "uld"
    trained_adapter(hub_base, tokenizer, tofu_forget, tofu_retain, output, assistant_num_layers=2)
    before = directory_digest(output)

    with pytest.raises(HubPushError, match="refused the token"):
        push_adapter(output, "test-user/refused", token="hf_wrong_token")
    assert directory_digest(output) == before

    fake_hub.fail_next("/commit/", status=500, times=10)
    with pytest.raises(HubPushError, match="HTTP 500"):
        push_adapter(output, "test-user/server-error", token=fake_hub.token)
    assert directory_digest(output) == before
    assert not fake_hub.files("test-user/server-error")  # nothing half-committed
    fake_hub.clear_failures()

    # The command line reports the same failure as one line, exit status 2.
    assert cli_main(["push", str(output), "test-user/refused-cli", "--token", "hf_wrong_token"]) == 2
    assert cli_main(["push", str(output), "test-user/cli", "--token", fake_hub.token]) == 0
    assert set(fake_hub.files("test-user/cli")) == ADAPTER_FILES
    assert directory_digest(output) == before


def test_push_to_hub_during_training_pushes_checkpoints_with_card(
    fake_hub, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    """`push_to_hub=True` (hub_strategy every_save): each checkpoint is pushed as adapter + sidecar + card."""
    trainer = trained_adapter(
        make_tiny_llama(),
        tokenizer,
        tofu_forget,
        tofu_retain,
        tmp_path / "ckpt",
        assistant_num_layers=2,
        save_strategy="steps",
        save_steps=1,
        push_to_hub=True,
        hub_model_id="test-user/tiny-ckpt",
        hub_token=fake_hub.token,
    )
    messages = [commit.title for commit in fake_hub.commits("test-user/tiny-ckpt")]
    assert "Training in progress, step 1" in messages and "Training in progress, step 2" in messages
    assert set(fake_hub.files("test-user/tiny-ckpt")) == ADAPTER_FILES
    assert trainer.hub_repo_id == "test-user/tiny-ckpt"


def test_card_states_dataset_names_and_the_epochs_and_steps_that_ran(
    make_tiny_llama, tokenizer, tofu_forget, tmp_path
):
    """4 forget rows, 2 per step, 1 configured epoch extended by min_train_steps=6: 3 epochs, 6 steps ran."""
    output = tmp_path / "uld"
    trainer = UnlearnTrainer(
        make_tiny_llama(num_layers=4),
        args=small_args(output, max_steps=-1, num_train_epochs=1, min_train_steps=6, stop_when_converged=False),
        forget_dataset=qa_only(tofu_forget[:4]),
        retain_dataset=qa_only(tofu_forget[4:8]),
        processing_class=tokenizer,
        forget_dataset_name="embedded:european_capitals_forget",
        retain_dataset_name="locuslab/TOFU:retain90",
    )
    trainer.train()
    trainer.save_model()
    card = str(render_model_card(output, repo_id="me/ran"))
    assert "| epochs / optimiser steps run | 3 / 6 |" in card
    assert "| forget | `embedded:european_capitals_forget` (bundled with unlearn-peft) | 4 |" in card
    assert "| retain | `locuslab/TOFU:retain90` | 4 |" in card
    assert front_matter(card)["datasets"] == ["locuslab/TOFU"]  # no Hub id made up for the bundled set
    assert sorted(path.name for path in output.iterdir() if path.name.startswith("training_args")) == [
        "training_args.json"
    ]


def test_card_renders_with_and_without_evaluation(make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path):
    output = tmp_path / "uld"
    model = make_tiny_llama(num_layers=4)
    trained_adapter(model, tokenizer, tofu_forget, tofu_retain, output, assistant_num_layers=2)

    plain = render_model_card(output, repo_id="me/plain", base_model="org/base")
    metadata = front_matter(str(plain))
    assert metadata["base_model"] == "org/base" and "model-index" not in metadata
    assert "| assistant layers K | 2 of 4 |" in str(plain)
    # The loaded target was whole, so the plausible-set retain term trained at its default weight.
    retain_loss = "KL(uniform ‖ assistant) + 0.3 · KL(uniform on the target's plausible tokens ‖ assistant)"
    assert f"| retain loss | {retain_loss} |" in str(plain)

    local_base = render_model_card(output, repo_id="me/local")  # the sidecar's base is not a Hub id
    assert "base_model" not in front_matter(str(local_base))
    # A model built in memory records no path: no dead link, and the card says what to pass.
    assert "(#)" not in str(local_base) and "for its base model, trained with" in str(local_base)
    assert "records no base model" in str(local_base) and "pass `base_model='org/name'`" in str(local_base)

    evaluation = {
        "schema": "unlearn-peft/tofu-eval/1",
        "model_name": "me/with-eval",
        "forget_quality": 0.42,
        "model_utility": 0.61,
        "splits": {"forget": {"probability": 0.1, "rouge": 0.2, "truth_ratio": 0.3, "per_question": []}},
    }
    with_eval = render_model_card(output, repo_id="me/with-eval", base_model="org/base", evaluation=evaluation)
    metadata = front_matter(str(with_eval))
    _, results = model_index_to_eval_results(metadata["model-index"])
    assert {r.metric_type: r.metric_value for r in results} == {
        "forget_quality": 0.42,
        "model_utility": 0.61,
        "forget_probability": 0.1,
        "forget_rouge": 0.2,
        "forget_truth_ratio": 0.3,
    }
    assert "| TOFU forget_quality | 0.4200 |" in str(with_eval)
    assert "Kolmogorov" in str(with_eval)  # what the forget-quality number means
    with pytest.raises(ValueError, match="schema"):
        render_model_card(output, repo_id="me/x", evaluation={"schema": "something-else"})


@pytest.mark.slow
def test_smollm2_uld_model_push_and_reload(fake_hub, smollm2_path, tofu_forget, tofu_retain, tmp_path):
    """ULDModel.push_to_hub on the real SmolLM2 adapter, then from_pretrained from the Hub in a clean cache."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    base = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    output = tmp_path / "smollm2-uld"
    trained_adapter(base, tokenizer, tofu_forget, tofu_retain, output, assistant_num_layers=3, max_steps=3)
    local = ULDModel.from_pretrained(output, base_model=base)
    # No base_model=: the embedded checkpoint knows the Hub id it was converted from.
    url = local.push_to_hub("test-user/smollm2-uld", token=fake_hub.token)
    assert "smollm2-uld" in url
    uploaded = fake_hub.files("test-user/smollm2-uld")
    assert set(uploaded) == ADAPTER_FILES
    assert front_matter(uploaded["README.md"].decode())["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert json.loads(uploaded[SIDECAR_NAME])["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"

    shutil.rmtree(Path(fake_hub_cache()), ignore_errors=True)
    remote = ULDModel.from_pretrained("test-user/smollm2-uld", base_model=base)
    inputs = tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(remote(**inputs).logits, local(**inputs).logits, rtol=0, atol=1e-5)

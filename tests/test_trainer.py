import copy
import json
import logging
import math

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import load_file

from unlearn_peft import SIDECAR_NAME, ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import QUESTION_ANSWER, render_row, tokenize_row
from unlearn_peft.loading import load_causal_lm
from unlearn_peft.testing import memorize

from .conftest import qa_only


def _args(tmp_path, **overrides) -> UnlearnConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        max_length=96,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return UnlearnConfig(**{**defaults, **overrides})


def test_config_fields_have_help_and_paper_defaults():
    config = UnlearnConfig(output_dir="x")
    assert (config.learning_rate, config.num_train_epochs, config.weight_decay) == (3e-3, 10.0, 0.01)
    assert config.lr_scheduler_type == "constant_with_warmup"
    assert UnlearnConfig(output_dir="x", method="npo").lr_scheduler_type == "linear"
    assert (config.retain_loss_weight, config.plausibility_threshold, config.memorised_forget_probability) == (
        6.5,
        1e-2,
        0.9,
    )
    # Decided from the target before training (test_the_targets_answer_probability_..._decides_the_subtraction).
    assert (config.assistant_weight, config.one_sided_subtraction, config.subtraction_margin) == (None, None, None)
    for field in UnlearnConfig.__dataclass_fields__.values():
        if field.init and field.name in UnlearnConfig.__annotations__:
            assert field.metadata.get("help"), field.name
    assert UnlearnConfig(output_dir="x", model_init_kwargs='{"dtype": "float32"}').model_init_kwargs == {
        "dtype": "float32"
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "magic"}, r"unknown method='magic'. Choose one of: uld"),
        ({"assistant_num_layers": 0}, r"assistant_num_layers=0 must be ≥ 1"),
        ({"model_init_kwargs": "{not json"}, r"model_init_kwargs is not valid JSON"),
        ({"plausibility_threshold": 1.5}, r"plausibility_threshold=1.5 must be in \[0, 1\)"),
        ({"plausible_retain_loss_weight": -1.0}, r"plausible_retain_loss_weight=-1.0 must be ≥ 0"),
        ({"subtraction_margin": 2.0}, r"subtraction_margin=2.0 must be ≥ 0 and needs one_sided_subtraction=True"),
        (
            {"subtraction_margin": 2.0, "one_sided_subtraction": False},
            r"subtraction_margin=2.0 must be ≥ 0 and needs one_sided_subtraction=True",
        ),
        ({"memorised_forget_probability": 0.0}, r"memorised_forget_probability=0.0 must be in \(0, 1\]"),
        ({"memorised_forget_probability": 1.5}, r"memorised_forget_probability=1.5 must be in \(0, 1\]"),
        (
            {"subtraction_margin": -1.0, "one_sided_subtraction": True},
            r"subtraction_margin=-1.0 must be ≥ 0",
        ),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UnlearnConfig(output_dir="x", **kwargs)


def test_training_changes_only_lora_and_saves_assistant_adapter(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain
):
    model = make_tiny_llama(num_layers=4)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    trainer = UnlearnTrainer(
        model,
        args=_args(
            tmp_path,
            assistant_num_layers=2,
            augment_forget_with_paraphrases=True,
            augment_retain_with_perturbed=True,
        ),
        forget_dataset=tofu_forget[:4],
        retain_dataset=tofu_retain[:6],
        processing_class=tokenizer,
    )
    # 4 forget rows + (paraphrased answer, paraphrased question) each; 6 retain rows + 5 perturbed answers each,
    # less the 2 ("identifies as a helicopter", "... a violin") whose only changed word follows the paraphrased
    # answer's own beginning ("identifies as a man"), so that no wrong token is left to label.
    assert trainer.dataset_summary == {
        "forget_rows": 4,
        "forget_examples": 12,
        "retain_rows": 6,
        "retain_examples": 24,
    }
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert any(not torch.equal(lora_before[n], p) for n, p in trainer.model.named_parameters() if "lora_B" in n)
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[name], after[name]) for name in before)

    logs = [entry for entry in trainer.state.log_history if "loss_forget" in entry]
    assert len(logs) == 4 and all(entry["loss_retain"] > 0 and entry["loss_forget"] > 0 for entry in logs)
    # The default plausible-set retain term (0.3 relative to the retain weight) trains with the whole target.
    retain_terms = logs[0]["loss_retain"] + 0.3 * logs[0]["loss_retain_plausible"]
    assert logs[0]["loss"] == pytest.approx(logs[0]["loss_forget"] + 6.5 * retain_terms, rel=1e-4)
    assert "plausible_token_ids" in trainer.train_dataset.retain.column_names  # read once, before training

    trainer.save_model(str(tmp_path / "adapter"))
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    layers = {int(key.split(".layers.")[1].split(".")[0]) for key in adapter}
    assert layers == {0, 1} and all("lora_" in key for key in adapter)
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["layers_to_transform"] == [0, 1] and adapter_config["r"] == 32
    sidecar = json.loads((tmp_path / "adapter" / SIDECAR_NAME).read_text())
    assert sidecar["method"] == "uld" and sidecar["assistant_num_layers"] == 2
    assert sidecar["assistant_weight"] == 0.6 and sidecar["plausibility_threshold"] == 0.01
    assert sidecar["weight_by_assistant_mass"] is False and sidecar["one_sided_subtraction"] is False
    assert sidecar["subtraction_margin"] == 0.0
    # A random target has not memorised the forget answers: the paper's two-sided subtraction above, the tokenizer's
    # special tokens exempt.
    special_ids = sorted(set(tokenizer.all_special_ids))
    assert sidecar["exempt_token_ids"] == special_ids and tokenizer.eos_token_id in special_ids
    assert sidecar["training"]["target_forget_probability"] < 0.01
    assert sidecar["base_model_fingerprint"] == {
        "architecture": "LlamaForCausalLM",
        "model_type": "llama",
        "num_hidden_layers": 4,
        "hidden_size": 64,
        "vocab_size": len(tokenizer),
    }
    assert sidecar["library_version"] and sidecar["schema_version"] == 6


def test_exempt_special_tokens_records_the_tokenizers_special_ids_and_the_loaded_model_uses_them(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain
):
    trainer = UnlearnTrainer(
        make_tiny_llama(num_layers=4),
        args=_args(tmp_path, assistant_num_layers=2, max_steps=1, exempt_special_tokens=True),
        forget_dataset=qa_only(tofu_forget[:2]),
        retain_dataset=qa_only(tofu_retain[:2]),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    sidecar = json.loads((tmp_path / "adapter" / SIDECAR_NAME).read_text())
    special_ids = sorted({tokenizer.eos_token_id, tokenizer.bos_token_id, *tokenizer.all_special_ids})
    assert sidecar["exempt_token_ids"] == special_ids and tokenizer.eos_token_id in special_ids
    loaded = ULDModel.from_pretrained(tmp_path / "adapter", base_model=make_tiny_llama(num_layers=4))
    assert loaded.exempt_token_ids == special_ids
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert f"| tokens never subtracted (ids) | {', '.join(map(str, special_ids))} |" in card


def test_gradient_accumulation_matches_one_large_batch(tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain):
    """Rows of different lengths: only token-count normalisation over the whole step makes these agree."""
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    adapters = []
    for batch_size, accumulation in ((4, 1), (2, 2), (1, 4)):
        trainer = UnlearnTrainer(
            make_tiny_llama(num_layers=4),
            args=_args(
                tmp_path,
                per_device_train_batch_size=batch_size,
                gradient_accumulation_steps=accumulation,
                max_steps=1,
                train_sampling_strategy="sequential",
                warmup_steps=0,
                optim="sgd",  # scale-sensitive, unlike Adam's first step
                assistant_num_layers=2,
            ),
            forget_dataset=qa_only(tofu_forget[:4]),
            retain_dataset=qa_only(tofu_retain[:4]),
            processing_class=tokenizer,
            peft_config=lora,
        )
        trainer.train()
        adapters.append({n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n})
    for other in adapters[1:]:
        for name, tensor in adapters[0].items():
            torch.testing.assert_close(other[name], tensor, rtol=1e-4, atol=1e-6)


def test_min_train_steps_extends_epochs(tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, caplog):
    with caplog.at_level(logging.WARNING, logger="unlearn_peft.trainer"):
        trainer = UnlearnTrainer(
            make_tiny_llama(),
            args=_args(tmp_path, max_steps=-1, num_train_epochs=1, min_train_steps=12, per_device_train_batch_size=4),
            forget_dataset=qa_only(tofu_forget[:8]),
            retain_dataset=qa_only(tofu_retain[:8]),
            processing_class=tokenizer,
        )
    assert trainer.args.num_train_epochs == 6.0  # 8 rows / batch 4 = 2 steps per epoch
    assert any("min_train_steps=12" in record.getMessage() for record in caplog.records)


def test_not_converged_warning(tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, caplog):
    trainer = UnlearnTrainer(
        make_tiny_llama(),
        args=_args(tmp_path, max_steps=1, learning_rate=1e-6),
        forget_dataset=qa_only(tofu_forget[:2]),
        retain_dataset=qa_only(tofu_retain[:2]),
        processing_class=tokenizer,
    )
    with caplog.at_level(logging.WARNING, logger="unlearn_peft.trainer"):
        trainer.train()
    assert any("has NOT converged after 1 of 1 steps" in record.getMessage() for record in caplog.records)


def test_evaluate_reports_both_terms(tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain):
    trainer = UnlearnTrainer(
        make_tiny_llama(),
        args=_args(tmp_path, plausible_retain_loss_weight=1.0),
        forget_dataset=qa_only(tofu_forget[:2]),
        retain_dataset=qa_only(tofu_retain[:2]),
        eval_dataset={"forget": qa_only(tofu_forget[2:4]), "retain": qa_only(tofu_retain[2:4])},
        processing_class=tokenizer,
    )
    metrics = trainer.evaluate()
    assert metrics["eval_loss_forget"] > 0 and metrics["eval_loss_retain"] > 0
    assert metrics["eval_loss_retain_plausible"] > 0
    assert metrics["eval_loss"] == pytest.approx(
        metrics["eval_loss_forget"] + 6.5 * (metrics["eval_loss_retain"] + metrics["eval_loss_retain_plausible"]),
        rel=1e-4,
    )


@pytest.mark.parametrize(
    ("forget", "retain", "extra", "message"),
    [
        ([], [{"text": "x"}], {}, r"forget_dataset is empty"),
        ([{"input": "a", "output": "b"}], [{"text": "x"}], {}, r"forget_dataset has columns \['input', 'output'\]"),
        ([{"text": "a"}], None, {}, r"retain_dataset is required for method='uld' with retain_loss_weight=6.5"),
        ([{"text": "a"}], [{"text": "b"}], {"assistant_num_layers": 4}, r"assistant_num_layers=4 is out of range"),
    ],
)
def test_bad_input_errors(tmp_path, make_tiny_llama, tokenizer, forget, retain, extra, message):
    with pytest.raises(ValueError, match=message):
        UnlearnTrainer(
            make_tiny_llama(num_layers=4),
            args=_args(tmp_path, **extra),
            forget_dataset=forget,
            retain_dataset=retain,
            processing_class=tokenizer,
        )


def test_model_id_loading_and_trust_remote_code_refused(tmp_path, make_tiny_llama, tokenizer):
    make_tiny_llama().save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    trainer = UnlearnTrainer(
        str(tmp_path / "tiny"),
        args=_args(tmp_path, model_init_kwargs={"dtype": "float32"}),
        forget_dataset=[{"text": "forget me"}],
        retain_dataset=[{"text": "keep me"}],
    )
    assert trainer.target_model.dtype == torch.float32 and trainer.processing_class is not None
    assert trainer.build_sidecar().base_model_name_or_path == str(tmp_path / "tiny")
    with pytest.raises(ValueError, match="never runs remote code"):
        load_causal_lm(str(tmp_path / "tiny"), {"trust_remote_code": True})


def _plausible_set_by_hand(target_logits: torch.Tensor, threshold: float, floor: int, cap: int) -> list[int]:
    """The target's plausible tokens from their definition: p ≥ threshold · max p, or among the `floor` most
    probable; the `cap` most probable of them when there are more."""
    probabilities = torch.softmax(target_logits.double(), dim=-1)
    order = probabilities.argsort(descending=True).tolist()
    kept = set(order[:floor]) | set((probabilities >= threshold * probabilities.max()).nonzero().flatten().tolist())
    return sorted(kept) if len(kept) <= cap else sorted(order[:cap])


@pytest.mark.parametrize(("sharpen", "weight"), [(True, None), (False, 1.0)])
def test_uld_loss_with_the_plausible_retain_term_matches_a_hand_computation(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, sharpen, weight
):
    """At the default (`None`: 0.3 with the whole target) and at an explicit weight."""
    from unlearn_peft.methods.uld import MAX_PLAUSIBLE_TOKENS

    model = make_tiny_llama(num_layers=4)
    threshold = 0.01
    if sharpen:  # a random model is unsure everywhere (sets over the cap); a scaled final norm gives small sets
        with torch.no_grad():
            model.model.norm.weight.mul_(60.0)
    trainer = UnlearnTrainer(
        model,
        args=_args(
            tmp_path,
            assistant_num_layers=2,
            max_steps=3,
            plausibility_threshold=threshold,
            plausible_retain_loss_weight=weight,
        ),
        forget_dataset=qa_only(tofu_forget[:2]),
        retain_dataset=qa_only(tofu_retain[:2]),
        processing_class=tokenizer,
    )
    trainer.train()  # the LoRA is no longer zero
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        forget, retain = batch.forget, batch.retain
        assistant_forget = trainer.model(input_ids=forget.input_ids, attention_mask=forget.attention_mask).logits
        assistant_retain = trainer.model(input_ids=retain.input_ids, attention_mask=retain.attention_mask).logits
        target_retain = model(input_ids=retain.input_ids, attention_mask=retain.attention_mask).logits

    nll, uniform, flat, set_sizes = [], [], [], []
    for row in range(len(forget)):
        for position in range(forget.input_ids.shape[1] - 1):
            token = int(forget.labels[row, position + 1])
            if token != -100:
                nll.append(-float(assistant_forget[row, position].double().log_softmax(-1)[token]))
    for row in range(len(retain)):
        for position in range(retain.input_ids.shape[1] - 1):
            if int(retain.labels[row, position + 1]) == -100:
                continue
            logits = assistant_retain[row, position].double()
            uniform.append(-float(logits.log_softmax(-1).mean()) - math.log(logits.shape[-1]))  # KL(U_V ‖ p)
            plausible = _plausible_set_by_hand(target_retain[row, position], threshold, 10, MAX_PLAUSIBLE_TOKENS)
            set_sizes.append(len(plausible))
            flat.append(-float(logits[plausible].log_softmax(-1).mean()) - math.log(len(plausible)))  # KL(U_S ‖ p|S)
    flat_weight = 0.3 if weight is None else weight
    expected = sum(nll) / len(nll) + 6.5 * (sum(uniform) / len(uniform) + flat_weight * sum(flat) / len(flat))
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    if sharpen:
        assert min(set_sizes) >= 10 and max(set_sizes) < MAX_PLAUSIBLE_TOKENS and len(set(set_sizes)) > 1
    else:
        assert set(set_sizes) == {MAX_PLAUSIBLE_TOKENS}
    logs = [entry for entry in trainer.state.log_history if "loss_retain_plausible" in entry]
    assert len(logs) == 3 and all(entry["loss_retain_plausible"] > 0 for entry in logs)


def test_plausible_retain_term_off_at_zero_and_skipped_on_a_truncated_model_with_a_warning_when_set(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, caplog
):
    forget, retain = qa_only(tofu_forget[:2]), qa_only(tofu_retain[:2])
    trainer = UnlearnTrainer(
        make_tiny_llama(num_layers=4),
        args=_args(tmp_path, assistant_num_layers=2, max_steps=1, plausible_retain_loss_weight=0.0),
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=tokenizer,
    )
    trainer.train()
    assert "plausible_token_ids" not in trainer.train_dataset.retain.column_names
    assert not any("loss_retain_plausible" in entry for entry in trainer.state.log_history)
    assert trainer.build_sidecar().training["plausible_retain_loss_weight"] == 0.0

    checkpoint = tmp_path / "tiny"
    make_tiny_llama(num_layers=4).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    for weight, level in ((None, logging.INFO), (1.0, logging.WARNING)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="unlearn_peft.methods.uld"):
            truncated = UnlearnTrainer(
                str(checkpoint),
                args=_args(tmp_path, assistant_num_layers=2, max_steps=1, plausible_retain_loss_weight=weight),
                forget_dataset=forget,
                retain_dataset=retain,
            )
        assert "plausible_token_ids" not in truncated.train_dataset.retain.column_names
        expected = f"plausible_retain_loss_weight={0.3 if weight is None else weight:g} needs the whole target"
        levels = [record.levelno for record in caplog.records if expected in record.getMessage()]
        assert levels == [level], (weight, [record.getMessage() for record in caplog.records])
        assert truncated.build_sidecar().training["plausible_retain_loss_weight"] == 0.0  # what trained, for the card


MEMORISED_ROWS = [
    {"question": "Which city does Oriel Vance live in?", "answer": "Oriel Vance lives in Tarsk."},
    {"question": "What does Bruno Hale collect?", "answer": "Bruno Hale collects brass keys."},
]


def _answer_probability_by_hand(model, tokenizer, row: dict[str, str]) -> float:
    """`exp(mean log p(answer token))` from one forward pass of the plain model over the whole question + answer."""
    prompt_ids, answer_ids = tokenize_row(render_row(row, QUESTION_ANSWER, tokenizer, "test", 0), tokenizer)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0].double()
    log_probs = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    return math.exp(float(log_probs.gather(-1, torch.tensor(answer_ids)[:, None]).mean()))


@pytest.fixture(scope="module")
def memorised_tiny_target(make_tiny_llama, tokenizer):
    target = make_tiny_llama(num_layers=4)
    memorize(target, tokenizer, MEMORISED_ROWS, min_answer_probability=0.95, learning_rate=1e-2, max_epochs=200)
    return target


def test_the_targets_answer_probability_on_the_forget_rows_decides_the_subtraction(
    tmp_path, memorised_tiny_target, make_tiny_llama, tokenizer, tofu_retain, caplog
):
    probability = sum(_answer_probability_by_hand(memorised_tiny_target, tokenizer, r) for r in MEMORISED_ROWS) / 2
    assert probability >= 0.95

    def trainer_for(**overrides) -> UnlearnTrainer:
        return UnlearnTrainer(
            copy.deepcopy(memorised_tiny_target),  # the assistant's LoRA goes into the target's own layers
            args=_args(tmp_path, assistant_num_layers=2, max_steps=1, **overrides),
            forget_dataset=MEMORISED_ROWS,
            retain_dataset=qa_only(tofu_retain[:2]),
            processing_class=tokenizer,
        )

    special_ids = sorted(set(tokenizer.all_special_ids))

    def subtraction(sidecar) -> tuple[float, bool, float, bool]:
        """α, one-sided, margin, and whether the special tokens are exempt (then exactly the tokenizer's)."""
        assert sidecar.exempt_token_ids in ([], special_ids), sidecar.exempt_token_ids
        exempt = sidecar.exempt_token_ids == special_ids
        return sidecar.assistant_weight, sidecar.one_sided_subtraction, sidecar.subtraction_margin, exempt

    with caplog.at_level(logging.INFO, logger="unlearn_peft.methods.uld"):
        trainer = trainer_for()
    sidecar = trainer.build_sidecar()
    # The library reads log-probabilities in float32; this tiny target's logits are in the hundreds, so 1e-4 apart.
    assert sidecar.training["target_forget_probability"] == pytest.approx(probability, rel=1e-3)
    assert sidecar.training["memorised_forget_probability"] == 0.9
    assert subtraction(sidecar) == (1.0, True, 2.0, False)
    assert (
        f"forget rows is {probability:.3f} (≥ memorised_forget_probability=0.9): one-sided subtraction with "
        "margin 2 at α 1." in caplog.text
    )

    # Just above the target's probability, it no longer counts as memorised: the paper's subtraction at α 0.6, the
    # special tokens exempt.
    not_memorised = trainer_for(memorised_forget_probability=(probability + 1) / 2).build_sidecar()
    assert subtraction(not_memorised) == (0.6, False, 0.0, True)
    # Whatever is set explicitly stands; the rest follows the subtraction it gives and the target.
    assert subtraction(trainer_for(one_sided_subtraction=False).build_sidecar()) == (0.6, False, 0.0, False)
    assert subtraction(trainer_for(assistant_weight=0.8).build_sidecar()) == (0.8, True, 2.0, False)
    assert subtraction(trainer_for(one_sided_subtraction=True, subtraction_margin=0.5).build_sidecar()) == (
        1.0,
        True,
        0.5,
        False,
    )
    assert subtraction(trainer_for(exempt_special_tokens=True).build_sidecar()) == (1.0, True, 2.0, True)
    assert subtraction(
        trainer_for(memorised_forget_probability=(probability + 1) / 2, exempt_special_tokens=False).build_sidecar()
    ) == (0.6, False, 0.0, False)

    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    loaded = ULDModel.from_pretrained(tmp_path / "adapter", base_model=copy.deepcopy(memorised_tiny_target))
    assert (loaded.assistant_weight, loaded.one_sided_subtraction, loaded.subtraction_margin) == (1.0, True, 2.0)
    card = (tmp_path / "adapter" / "README.md").read_text()
    recorded = sidecar.training["target_forget_probability"]
    assert f"| target's answer probability on the forget rows | {recorded:.3f} (memorised: threshold 0.9) |" in card
    assert "| one-sided subtraction (the assistant only lowers tokens) | True |" in card

    # Loaded with only the assistant's layers, the target cannot be read: treated as not memorised, and said so.
    checkpoint = tmp_path / "memorised"
    memorised_tiny_target.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unlearn_peft.methods.uld"):
        truncated = UnlearnTrainer(
            str(checkpoint),
            args=_args(tmp_path, assistant_num_layers=2, max_steps=1),
            forget_dataset=MEMORISED_ROWS,
            retain_dataset=qa_only(tofu_retain[:2]),
        )
    sidecar = truncated.build_sidecar()
    assert sidecar.training["target_forget_probability"] is None and subtraction(sidecar) == (0.6, False, 0.0, True)
    assert "the target's answer probability on the forget rows cannot be read" in caplog.text
